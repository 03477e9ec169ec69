"""staff security keys (WebAuthn)

Staff may register security keys; admins must sign in with one when
PORTAL_ADMIN_SECURITY_KEY_REQUIRED is on (checklist OTP-03). A staff session keeps the
challenges it was given, so each works once and only for that session.

Revision ID: 7a3e5c1d9b20
Revises: 5d0c7e2a9f41
Create Date: 2026-11-27 21:10:00.000000

"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "7a3e5c1d9b20"
down_revision = "5d0c7e2a9f41"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "security_key",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=32), nullable=False),
        sa.Column("staff_id", sa.Integer(), nullable=False),
        sa.Column("credential_id", sa.LargeBinary(length=1023), nullable=False),
        sa.Column("public_key", sa.LargeBinary(length=2048), nullable=False),
        sa.Column("sign_count", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=60), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["staff_id"],
            ["staff_member.id"],
            name=op.f("fk_security_key_staff_id_staff_member"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_security_key")),
        sa.UniqueConstraint("credential_id", name=op.f("uq_security_key_credential_id")),
        sa.UniqueConstraint("public_id", name=op.f("uq_security_key_public_id")),
    )
    op.create_index(op.f("ix_security_key_staff_id"), "security_key", ["staff_id"], unique=False)
    # Plain ADD COLUMNs (no batch): a batch would copy and drop staff_session.
    op.add_column("staff_session", sa.Column("sign_challenge", sa.LargeBinary(length=64)))
    op.add_column("staff_session", sa.Column("sign_challenge_at", sa.DateTime(timezone=True)))
    op.add_column("staff_session", sa.Column("register_challenge", sa.LargeBinary(length=64)))
    op.add_column(
        "staff_session", sa.Column("register_challenge_at", sa.DateTime(timezone=True))
    )


def downgrade():
    # Plain DROP COLUMN (SQLite has it since 3.35), as the upgrade added them.
    op.drop_column("staff_session", "register_challenge_at")
    op.drop_column("staff_session", "register_challenge")
    op.drop_column("staff_session", "sign_challenge_at")
    op.drop_column("staff_session", "sign_challenge")
    op.drop_index(op.f("ix_security_key_staff_id"), table_name="security_key")
    op.drop_table("security_key")
