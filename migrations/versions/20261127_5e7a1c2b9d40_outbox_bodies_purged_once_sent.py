"""outbox bodies purged once sent: a digest and the time of the purge

A message that has left the queue (sent, failed for good, expired) keeps no body: it held a
code, a link or personal data. The digest of the bytes that were sent stays, to match a message
someone forwards to us to its row. Rows already finished before this revision keep their body
until `portal retention run` deletes them after SENT_MESSAGE_RETENTION_TTL.

Revision ID: 5e7a1c2b9d40
Revises: 5a7c0de1f2b3
Create Date: 2026-11-27 20:40:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '5e7a1c2b9d40'
down_revision = '5a7c0de1f2b3'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('outbox_message', schema=None) as batch_op:
        batch_op.add_column(sa.Column('body_digest', sa.LargeBinary(length=32), nullable=True))
        batch_op.add_column(
            sa.Column('body_purged_at', sa.DateTime(timezone=True), nullable=True)
        )


def downgrade():
    with op.batch_alter_table('outbox_message', schema=None) as batch_op:
        batch_op.drop_column('body_purged_at')
        batch_op.drop_column('body_digest')
