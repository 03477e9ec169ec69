"""kept acts sealed in the database

A staff POST kept while its sender proves who they are again is a sealed row bound to the staff
session (it was a plain JSON file under instance/kept/, on one app instance only).

Revision ID: 9c4b2e7d1a53
Revises: 7a3e5c1d9b20
Create Date: 2026-11-27 21:50:00.000000

"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "9c4b2e7d1a53"
down_revision = "7a3e5c1d9b20"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "kept_act",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=32), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("endpoint", sa.String(length=100), nullable=False),
        sa.Column("path", sa.String(length=500), nullable=False),
        sa.Column("payload_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["staff_session.id"],
            name=op.f("fk_kept_act_session_id_staff_session"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kept_act")),
        sa.UniqueConstraint("public_id", name=op.f("uq_kept_act_public_id")),
    )
    op.create_index(op.f("ix_kept_act_session_id"), "kept_act", ["session_id"], unique=False)
    op.create_index(op.f("ix_kept_act_created_at"), "kept_act", ["created_at"], unique=False)


def downgrade():
    op.drop_index(op.f("ix_kept_act_created_at"), table_name="kept_act")
    op.drop_index(op.f("ix_kept_act_session_id"), table_name="kept_act")
    op.drop_table("kept_act")
