"""support desk: name and phone lookup indexes, callback requests, links for help requests

Revision ID: 3b7e1c9d4a2f
Revises: cc28d1415a7a
Create Date: 2026-11-27 16:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '3b7e1c9d4a2f'
down_revision = 'cc28d1415a7a'
branch_labels = None
depends_on = None

OLD_TOPICS = "topic IN ('cannot_finish', 'identity_theft', 'my_data', 'cannot_verify', 'other')"
NEW_TOPICS = (
    "topic IN ('cannot_finish', 'identity_theft', 'my_data', 'cannot_verify', 'callback', "
    "'other')"
)


def upgrade():
    # Existing rows keep a null index until they are imported again or a key rotation passes:
    # the digests need the data keys, which never reach the migration.
    with op.batch_alter_table('customer', schema=None) as batch_op:
        batch_op.add_column(sa.Column('name_index', sa.LargeBinary(length=16), nullable=True))
        batch_op.add_column(sa.Column('phone_index', sa.LargeBinary(length=16), nullable=True))
        batch_op.create_index(batch_op.f('ix_customer_name_index'), ['name_index'], unique=False)
        batch_op.create_index(batch_op.f('ix_customer_phone_index'), ['phone_index'], unique=False)

    with op.batch_alter_table('support_case', schema=None) as batch_op:
        batch_op.add_column(sa.Column('callback_sealed', sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column('help_link_nonce', sa.String(length=32), nullable=True))
        batch_op.drop_constraint(batch_op.f('ck_support_case_topic'), type_='check')
        batch_op.create_check_constraint('topic', NEW_TOPICS)


def downgrade():
    with op.batch_alter_table('support_case', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_support_case_topic'), type_='check')
        batch_op.create_check_constraint('topic', OLD_TOPICS)
        batch_op.drop_column('help_link_nonce')
        batch_op.drop_column('callback_sealed')

    with op.batch_alter_table('customer', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_customer_phone_index'))
        batch_op.drop_index(batch_op.f('ix_customer_name_index'))
        batch_op.drop_column('phone_index')
        batch_op.drop_column('name_index')
