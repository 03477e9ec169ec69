"""a customer's email is optional (a postal address is enough to reach them)

Revision ID: f4b8d2e6a1c9
Revises: e5a7c9d1f3b2
Create Date: 2026-11-28 09:00:00.000000

"""

import sqlalchemy as sa
from alembic import op

revision = "f4b8d2e6a1c9"
down_revision = "e5a7c9d1f3b2"
branch_labels = None
depends_on = None


def _refuse_cascades(bind) -> None:
    """On SQLite the column change rebuilds `customer` (copy, DROP, rename): with foreign keys
    enforced, the DROP deletes every row that cascades from a customer (exposures, notices,
    verifications, letters...). migrations/env.py turns them off outside any transaction (the
    pragma does nothing inside one); here the rebuild refuses to run if they are still on."""
    if bind.dialect.name != "sqlite":
        return
    if bind.exec_driver_sql("PRAGMA foreign_keys").scalar():
        raise RuntimeError(
            "foreign keys are enforced on this SQLite connection: rebuilding the customer "
            "table would delete the rows that cascade from it; run this through migrations/env.py"
        )


def upgrade():
    _refuse_cascades(op.get_bind())
    with op.batch_alter_table("customer", schema=None) as batch_op:
        batch_op.alter_column("email_sealed", existing_type=sa.LargeBinary(), nullable=True)
        batch_op.alter_column(
            "email_index", existing_type=sa.LargeBinary(length=16), nullable=True
        )


def downgrade():
    bind = op.get_bind()
    without = bind.exec_driver_sql(
        "SELECT count(*) FROM customer WHERE email_sealed IS NULL OR email_index IS NULL"
    ).scalar()
    if without:
        # Not deleted to fit the older schema: they are people owed a notice.
        raise RuntimeError(
            f"{without} customer(s) have no email address; the older schema needs one for each"
        )
    _refuse_cascades(bind)
    with op.batch_alter_table("customer", schema=None) as batch_op:
        batch_op.alter_column(
            "email_index", existing_type=sa.LargeBinary(length=16), nullable=False
        )
        batch_op.alter_column("email_sealed", existing_type=sa.LargeBinary(), nullable=False)
