"""contact changes staff ask for are held: a table of them

A change of a customer's email or phone made by staff no longer lands on the customer at once:
it waits in contact_change until the new address enters its code and a second staff member
approves (or the hold passes). Nothing existing moves.

Revision ID: 5d0c7a61e2b9
Revises: 5e7a1c2b9d40
Create Date: 2026-11-27 20:50:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '5d0c7a61e2b9'
down_revision = '5e7a1c2b9d40'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('contact_change',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=True),
    sa.Column('field', sa.String(length=8), nullable=False),
    sa.Column('value_sealed', sa.LargeBinary(), nullable=False),
    sa.Column('code_digest', sa.LargeBinary(length=32), nullable=False),
    sa.Column('code_tries', sa.Integer(), nullable=False),
    sa.Column('confirm_nonce', sa.String(length=32), nullable=False),
    sa.Column('cancel_nonce', sa.String(length=32), nullable=False),
    sa.Column('requested_by_id', sa.Integer(), nullable=True),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('proved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('approved_by_id', sa.Integer(), nullable=True),
    sa.Column('approved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancelled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancelled_by', sa.String(length=40), nullable=True),
    sa.Column('applied_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("field IN ('email', 'phone')", name=op.f('ck_contact_change_field')),
    sa.ForeignKeyConstraint(['approved_by_id'], ['staff_member.id'], name=op.f('fk_contact_change_approved_by_id_staff_member'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['case_id'], ['support_case.id'], name=op.f('fk_contact_change_case_id_support_case'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], name=op.f('fk_contact_change_customer_id_customer'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['requested_by_id'], ['staff_member.id'], name=op.f('fk_contact_change_requested_by_id_staff_member'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_contact_change')),
    sa.UniqueConstraint('public_id', name=op.f('uq_contact_change_public_id'))
    )
    with op.batch_alter_table('contact_change', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_contact_change_case_id'), ['case_id'], unique=False)
        batch_op.create_index('ix_contact_change_customer_requested', ['customer_id', 'requested_at'], unique=False)


def downgrade():
    # The held changes go with the table: none of them was applied to a customer yet, or it
    # already is; a downgrade loses only requests still waiting (their links stop working).
    with op.batch_alter_table('contact_change', schema=None) as batch_op:
        batch_op.drop_index('ix_contact_change_customer_requested')
        batch_op.drop_index(batch_op.f('ix_contact_change_case_id'))

    op.drop_table('contact_change')
