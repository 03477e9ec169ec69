"""outbox templates for notice campaigns

A notice campaign renders its message once per variant into an outbox template; each message
holds only its own values (sealed) and names its template.

Revision ID: b4e2c9a7d310
Revises: 9c4b2e7d1a53
Create Date: 2026-11-28 02:40:00.000000

"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "b4e2c9a7d310"
down_revision = "9c4b2e7d1a53"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "outbox_template",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("sender", sa.String(length=255), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("locale", sa.String(length=16), nullable=False),
        sa.Column("text_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("html_sealed", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_template")),
        sa.UniqueConstraint("digest", name=op.f("uq_outbox_template_digest")),
    )
    with op.batch_alter_table("outbox_message", schema=None) as batch_op:
        batch_op.add_column(sa.Column("template_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_outbox_message_template_id_outbox_template"),
            "outbox_template",
            ["template_id"],
            ["id"],
        )


def downgrade():
    with op.batch_alter_table("outbox_message", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_outbox_message_template_id_outbox_template"), type_="foreignkey"
        )
        batch_op.drop_column("template_id")
    op.drop_table("outbox_template")
