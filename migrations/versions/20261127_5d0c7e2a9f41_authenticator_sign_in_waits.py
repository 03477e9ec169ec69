"""authenticator sign-in waits instead of locking

Wrong authenticator codes at /signin no longer lock the customer's every way in; after a few,
signing in with the app alone waits until `customer.totp_retry_at` (30 s, doubling, at most an
hour). Nothing to carry over: a lock set by the old rule is lifted by support as before.

Revision ID: 5d0c7e2a9f41
Revises: 5d0c3a9e7b21
Create Date: 2026-11-27 20:45:00.000000

"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "5d0c7e2a9f41"
down_revision = "5d0c3a9e7b21"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("customer", schema=None) as batch_op:
        batch_op.add_column(sa.Column("totp_retry_at", sa.DateTime(timezone=True), nullable=True))


def downgrade():
    # A plain DROP COLUMN (SQLite has it since 3.35), not a batch: a batch copies and drops the
    # customer table, and with foreign keys on, dropping it would cascade into every notice.
    op.drop_column("customer", "totp_retry_at")
