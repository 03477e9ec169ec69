"""audit chain: its own keys, the client's address, and no TRUNCATE

Each audit event records which audit key signed it (`key_id`) and the client's address
(`client_addr`); both are part of what new events sign. Events already written were signed with
the key earlier versions derived from PORTAL_SECRET_KEY, over fields without these two: they are
marked `legacy` and keep their hash input, so nothing is re-signed. Re-signing would need the
old key anyway and would turn a chain that proves "nobody changed this since it was written" into
one that proves "somebody with the key rewrote it today". `portal audit verify` checks legacy
events with the legacy key (`portal audit legacy-key` prints it for PORTAL_AUDIT_KEYS).

On PostgreSQL a statement trigger also refuses TRUNCATE, which the row triggers never saw.

Revision ID: 5a7c0de1f2b3
Revises: 27f94b5142e7
Create Date: 2026-11-27 20:40:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '5a7c0de1f2b3'
down_revision = '27f94b5142e7'
branch_labels = None
depends_on = None


def upgrade():
    # Plain ADD COLUMN (no batch copy), so SQLite keeps the append-only triggers on the table.
    op.add_column(
        'audit_event',
        sa.Column('client_addr', sa.String(length=45), server_default='', nullable=False),
    )
    op.add_column(
        'audit_event',
        sa.Column('key_id', sa.String(length=16), server_default='legacy', nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        # TRUNCATE fires no row trigger: without this the table could be wiped in one statement.
        op.execute(
            "CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_event "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only()"
        )


def downgrade():
    # Events written after the upgrade do not verify on the code before it (their hash input
    # holds the key id and address): downgrade only to restore a backup taken before upgrading.
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_event_no_truncate ON audit_event")
        op.drop_column('audit_event', 'key_id')
        op.drop_column('audit_event', 'client_addr')
        return
    # SQLite copies the table to drop a column, which loses its triggers: drop, then remake them.
    op.execute("DROP TRIGGER IF EXISTS audit_event_no_update")
    op.execute("DROP TRIGGER IF EXISTS audit_event_no_delete")
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.drop_column('key_id')
        batch_op.drop_column('client_addr')
    for event in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER audit_event_no_{event.lower()} BEFORE {event} ON audit_event "
            "BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END"
        )
