"""one job queue: new-link requests leave the outbox

The outbox carries messages only; work for the worker is a row of background_job, which gains
what the outbox gave a new-link request: attempts and a time for the next one (a failed request
is tried again with backoff). A dedupe key and an expiry are not carried over: each request had a
random key (nothing was ever deduplicated by it) and none expired.

New-link requests still queued in the outbox become queued jobs, so no one who was told "a link
is on its way" is forgotten. Their payload is sealed for its place, so it is opened and sealed
again for the job's row with the app's keys (`portal db upgrade` runs inside the app). The
contexts are spelled out as they are at this revision, on purpose: a migration must keep working
whatever the models say later. Finished job rows (sent, failed, expired) are deleted: there is
nothing left to run, and their payload was an address. Stop the workers before upgrading, as for
every release: a request a running old worker holds could otherwise be run twice (harmless: the
link is replaced and mailed again, within the hourly cap).

Revision ID: 27f94b5142e7
Revises: cbf7b1e9ebb1
Create Date: 2026-11-27 17:28:10.226838

"""
import json
import secrets

from alembic import context, op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '27f94b5142e7'
down_revision = 'cbf7b1e9ebb1'
branch_labels = None
depends_on = None

outbox = sa.table(
    'outbox_message',
    sa.column('id', sa.Integer),
    sa.column('kind', sa.String),
    sa.column('dedupe_key', sa.String),
    sa.column('message_id', sa.String),
    sa.column('recipient_sealed', sa.LargeBinary),
    sa.column('subject', sa.String),
    sa.column('body_sealed', sa.LargeBinary),
    sa.column('locale', sa.String),
    sa.column('status', sa.String),
    sa.column('attempts', sa.Integer),
    sa.column('next_attempt_at', sa.DateTime(timezone=True)),
    sa.column('last_error', sa.String),
    sa.column('created_at', sa.DateTime(timezone=True)),
)
job = sa.table(
    'background_job',
    sa.column('id', sa.Integer),
    sa.column('public_id', sa.String),
    sa.column('kind', sa.String),
    sa.column('payload_sealed', sa.LargeBinary),
    sa.column('status', sa.String),
    sa.column('done', sa.Integer),
    sa.column('total', sa.Integer),
    sa.column('result', sa.Text),
    sa.column('created_by', sa.String),
    sa.column('created_at', sa.DateTime(timezone=True)),
    sa.column('attempts', sa.Integer),
    sa.column('next_attempt_at', sa.DateTime(timezone=True)),
)
OUTBOX_JOBS = ('new_link',)  # the only work the outbox ever carried
REQUESTER = 'customer'  # who queued it: the audit actor of a new-link request


def _vault():
    if context.is_offline_mode():
        # The payloads are re-sealed with the app's keys, which SQL alone cannot do.
        raise RuntimeError('this migration moves sealed rows: run `portal db upgrade` online')
    from portal.extensions import vault

    return vault


def upgrade():
    with op.batch_alter_table('background_job', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attempts', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True))
    op.execute(
        job.update().values(
            attempts=sa.case((job.c.status == 'queued', 0), else_=1),
            next_attempt_at=job.c.created_at,
        )
    )
    with op.batch_alter_table('background_job', schema=None) as batch_op:
        batch_op.alter_column('attempts', existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column(
            'next_attempt_at', existing_type=sa.DateTime(timezone=True), nullable=False
        )
        batch_op.drop_index(batch_op.f('ix_background_job_status'))
        batch_op.create_index('ix_background_job_due', ['status', 'next_attempt_at'], unique=False)

    _jobs_from_outbox()
    with op.batch_alter_table('outbox_message', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_outbox_message_kind'), type_='check')
        batch_op.create_check_constraint('kind', "kind IN ('email', 'sms', 'webhook')")


def _jobs_from_outbox():
    """Queued outbox jobs become queued jobs; finished ones go."""
    bind = op.get_bind()
    queued = bind.execute(
        sa.select(outbox).where(outbox.c.kind == 'job', outbox.c.status == 'queued')
    ).all()
    if queued:
        vault = _vault()
    for row in queued:
        payload = vault.open_bytes(row.body_sealed, f'outbox.body.{row.dedupe_key}')
        json.loads(payload)  # a job's payload is JSON: refuse to carry anything else
        public_id = secrets.token_hex(16)
        bind.execute(
            job.insert().values(
                public_id=public_id,
                kind=row.subject,
                payload_sealed=vault.seal(payload, f'background_job.payload.{public_id}'),
                status='queued',
                done=0,
                total=0,
                result='',
                created_by=REQUESTER,
                created_at=row.created_at,
                attempts=row.attempts,
                next_attempt_at=row.next_attempt_at,
            )
        )
    bind.execute(outbox.delete().where(outbox.c.kind == 'job'))


def downgrade():
    with op.batch_alter_table('outbox_message', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_outbox_message_kind'), type_='check')
        batch_op.create_check_constraint('kind', "kind IN ('email', 'sms', 'webhook', 'job')")
    _jobs_to_outbox()

    with op.batch_alter_table('background_job', schema=None) as batch_op:
        batch_op.drop_index('ix_background_job_due')
        batch_op.create_index(batch_op.f('ix_background_job_status'), ['status', 'id'], unique=False)
        batch_op.drop_column('next_attempt_at')
        batch_op.drop_column('attempts')


def _jobs_to_outbox():
    """Queued new-link jobs go back to the outbox, where the older code runs them."""
    bind = op.get_bind()
    queued = bind.execute(
        sa.select(job).where(job.c.kind.in_(OUTBOX_JOBS), job.c.status == 'queued')
    ).all()
    if queued:
        vault = _vault()
    for row in queued:
        payload = vault.open_bytes(row.payload_sealed, f'background_job.payload.{row.public_id}')
        key = f'newlink-request:{secrets.token_hex(16)}'
        bind.execute(
            outbox.insert().values(
                kind='job',
                dedupe_key=key,
                message_id=secrets.token_hex(16),
                recipient_sealed=vault.seal('', f'outbox.recipient.{key}'),
                subject=row.kind,
                body_sealed=vault.seal(payload, f'outbox.body.{key}'),
                locale='en',
                status='queued',
                attempts=row.attempts,
                next_attempt_at=row.next_attempt_at,
                last_error='',
                created_at=row.created_at,
            )
        )
    # The older code has no handler for these: whatever their state, they leave the job table.
    bind.execute(job.delete().where(job.c.kind.in_(OUTBOX_JOBS)))
