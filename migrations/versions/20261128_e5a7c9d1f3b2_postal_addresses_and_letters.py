"""postal addresses (sealed) and printed letters

Revision ID: e5a7c9d1f3b2
Revises: d3f8a1b6c4e7
Create Date: 2026-11-28 06:20:00.000000

"""

import sqlalchemy as sa
from alembic import op

revision = "e5a7c9d1f3b2"
down_revision = "d3f8a1b6c4e7"
branch_labels = None
depends_on = None

ADDRESS = ("address_line1_sealed", "address_line2_sealed", "city_sealed", "postal_code_sealed")


def upgrade():
    # Plain ADD COLUMN (no batch rebuild of `customer`: on SQLite that would cascade deletes).
    for column in ADDRESS:
        op.add_column("customer", sa.Column(column, sa.LargeBinary(), nullable=True))
    op.create_table(
        "letter",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(32), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("notice_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("batch_file", sa.String(200), nullable=True),
        sa.Column("page_count", sa.Integer(), nullable=True),
        sa.Column("produced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("mailed_on", sa.Date(), nullable=True),
        sa.Column("requested_by", sa.String(200), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "reason IN ('postal_notice', 'no_email', 'bounced', 'agent')",
            name=op.f("ck_letter_reason"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customer.id"],
            name=op.f("fk_letter_customer_id_customer"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incident.id"],
            name=op.f("fk_letter_incident_id_incident"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["notice_id"],
            ["notice.id"],
            name=op.f("fk_letter_notice_id_notice"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_letter")),
        sa.UniqueConstraint("public_id", name=op.f("uq_letter_public_id")),
        sa.UniqueConstraint("incident_id", "customer_id", name="uq_letter_once"),
    )
    op.create_index("ix_letter_incident_produced", "letter", ["incident_id", "produced_at"])


def downgrade():
    op.drop_index("ix_letter_incident_produced", table_name="letter")
    op.drop_table("letter")
    for column in reversed(ADDRESS):
        op.drop_column("customer", column)
