"""playbook tasks, findings, remediation actions and the incident's scope

Revision ID: f2b8d4e6a1c3
Revises: f1a2b3c4d5e6
Create Date: 2026-11-28 09:00:00.000000

"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "f2b8d4e6a1c3"
down_revision = "f1a2b3c4d5e6"
branch_labels = None
depends_on = None


def _incident_fk(table: str):
    return sa.ForeignKeyConstraint(
        ["incident_id"],
        ["incident.id"],
        name=op.f(f"fk_{table}_incident_id_incident"),
        ondelete="CASCADE",
    )


def upgrade():
    # Plain ADD COLUMN (no batch rebuild of `incident`: on SQLite that would cascade deletes).
    for column in ("affected_systems", "affected_data_sets"):
        op.add_column("incident", sa.Column(column, sa.Text(), server_default="", nullable=False))
    op.create_table(
        "playbook_task",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("notes", sa.Text(), server_default="", nullable=False),
        sa.Column("updated_by", sa.String(120), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('open', 'done', 'not_needed')", name=op.f("ck_playbook_task_status")
        ),
        _incident_fk("playbook_task"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_playbook_task")),
        sa.UniqueConstraint("incident_id", "task_id", name="uq_playbook_task_once"),
    )
    op.create_table(
        "finding",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("recorded_by", sa.String(120), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        _incident_fk("finding"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_finding")),
    )
    op.create_index("ix_finding_incident", "finding", ["incident_id", "recorded_at"])
    op.create_table(
        "remediation_action",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("owner", sa.String(32), nullable=False),
        sa.Column("due_on", sa.Date(), nullable=True),
        sa.Column("done_on", sa.Date(), nullable=True),
        sa.Column("created_on", sa.Date(), nullable=False),
        sa.Column("public", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("public_text", sa.Text(), server_default="", nullable=False),
        sa.Column("public_hash", sa.String(64), server_default="", nullable=False),
        sa.Column("created_by", sa.String(120), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "translations",
            sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
            server_default="{}",
            nullable=False,
        ),
        _incident_fk("remediation_action"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_remediation_action")),
    )
    op.create_index(
        "ix_remediation_action_incident", "remediation_action", ["incident_id", "public"]
    )


def downgrade():
    op.drop_index("ix_remediation_action_incident", table_name="remediation_action")
    op.drop_table("remediation_action")
    op.drop_index("ix_finding_incident", table_name="finding")
    op.drop_table("finding")
    op.drop_table("playbook_task")
    for column in ("affected_data_sets", "affected_systems"):
        op.drop_column("incident", column)
