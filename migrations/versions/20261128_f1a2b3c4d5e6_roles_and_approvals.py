"""staff roles (several per member) and four-eyes approvals

Revision ID: f1a2b3c4d5e6
Revises: e5a7c9d1f3b2
Create Date: 2026-11-28 08:50:00.000000

"""

import sqlalchemy as sa
from alembic import op

revision = "f1a2b3c4d5e6"
down_revision = "e5a7c9d1f3b2"
branch_labels = None
depends_on = None


def upgrade():
    # Plain ADD COLUMN (no batch rebuild of staff_member: on SQLite it would cascade into
    # sessions, recovery codes and security keys).
    op.add_column(
        "staff_member", sa.Column("roles", sa.String(120), server_default="", nullable=False)
    )
    # Every member keeps the role they had.
    op.execute("UPDATE staff_member SET roles = role")
    op.create_table(
        "approval",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("subject", sa.String(16), nullable=False),
        sa.Column("subject_ref", sa.String(64), nullable=False),
        sa.Column("pinned", sa.Text(), nullable=False),
        sa.Column("pinned_hash", sa.String(64), nullable=False),
        sa.Column("drafted_by_id", sa.Integer(), nullable=True),
        sa.Column("drafted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("approved_by_id", sa.Integer(), nullable=True),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("override_by_ids", sa.String(40), nullable=True),
        sa.Column("override_reason", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "subject IN ('campaign', 'letters', 'update', 'correction', 'remediation')",
            name=op.f("ck_approval_subject"),
        ),
        sa.CheckConstraint(
            "state IN ('pending', 'approved', 'superseded', 'overridden')",
            name=op.f("ck_approval_state"),
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incident.id"],
            name=op.f("fk_approval_incident_id_incident"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["drafted_by_id"],
            ["staff_member.id"],
            name=op.f("fk_approval_drafted_by_id_staff_member"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["approved_by_id"],
            ["staff_member.id"],
            name=op.f("fk_approval_approved_by_id_staff_member"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approval")),
    )
    op.create_index(op.f("ix_approval_incident_id"), "approval", ["incident_id"], unique=False)
    op.create_index("ix_approval_subject_ref", "approval", ["subject", "subject_ref"], unique=False)


def downgrade():
    op.drop_index("ix_approval_subject_ref", table_name="approval")
    op.drop_index(op.f("ix_approval_incident_id"), table_name="approval")
    op.drop_table("approval")
    # Plain DROP COLUMN, for the same reason as above; members keep their console kind in role.
    op.drop_column("staff_member", "roles")
