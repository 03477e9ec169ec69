"""codes claimed before notices: a partial index of the queued messages that expire

Revision ID: c7d1e5f3a902
Revises: b4e2c9a7d310
Create Date: 2026-11-28 04:15:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "c7d1e5f3a902"
down_revision = "b4e2c9a7d310"
branch_labels = None
depends_on = None

WHERE = sa.text("status = 'queued' AND expires_at IS NOT NULL")


def upgrade():
    op.create_index(
        "ix_outbox_message_urgent",
        "outbox_message",
        ["next_attempt_at", "id"],
        postgresql_where=WHERE,
        sqlite_where=WHERE,
    )


def downgrade():
    op.drop_index("ix_outbox_message_urgent", table_name="outbox_message")
