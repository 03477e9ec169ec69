"""the facts the law asks of a notice: breach range, law-enforcement delay, HIPAA role, postal
notice, consent to email, and the regions an offer is open to

Revision ID: d3f8a1b6c4e7
Revises: c7d1e5f3a902
Create Date: 2026-11-28 05:40:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "d3f8a1b6c4e7"
down_revision = "c7d1e5f3a902"
branch_labels = None
depends_on = None


# Plain ADD/DROP COLUMN, not batch mode: on SQLite a batch rebuild of `incident` drops the old
# table, and with foreign keys on that deletes every row that cascades from it (exposures,
# notices). The CHECKs are the database's guard on PostgreSQL; the console validates both.
CHECKS = {
    "hipaa_role": "hipaa_role IN ('none', 'covered_entity', 'business_associate')",
    "occurred_range": "occurred_to IS NULL OR occurred_on IS NULL OR occurred_to >= occurred_on",
}


def upgrade():
    op.add_column("incident", sa.Column("occurred_to", sa.Date(), nullable=True))
    op.add_column(
        "incident",
        sa.Column(
            "delayed_by_law_enforcement", sa.Boolean(), nullable=False, server_default=sa.false()
        ),
    )
    op.add_column(
        "incident", sa.Column("hipaa_role", sa.String(24), nullable=False, server_default="none")
    )
    op.add_column(
        "incident",
        sa.Column("postal_notice", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    if op.get_bind().dialect.name == "postgresql":
        for name, condition in CHECKS.items():
            op.create_check_constraint(name, "incident", condition)
    op.add_column("customer", sa.Column("email_consent", sa.Boolean(), nullable=True))
    op.add_column(
        "protection_offer",
        sa.Column("regions", sa.String(500), nullable=False, server_default=""),
    )


def downgrade():
    op.drop_column("protection_offer", "regions")
    op.drop_column("customer", "email_consent")
    if op.get_bind().dialect.name == "postgresql":
        for name in CHECKS:
            op.drop_constraint(name, "incident", type_="check")
    for column in ("postal_notice", "hipaa_role", "delayed_by_law_enforcement", "occurred_to"):
        op.drop_column("incident", column)
