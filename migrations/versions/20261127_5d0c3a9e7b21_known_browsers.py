"""known browsers: a sign-in from a browser new to the customer is told to them

Each browser a customer signs in from keeps a long-lived random cookie; this table keeps its
SHA-256 digest per customer. Existing customers start with no known browser: their next sign-in
from the notice (link or letter) is taken as the first and told to nobody, any other is told.

Revision ID: 5d0c3a9e7b21
Revises: 5d0c7a61e2b9
Create Date: 2026-11-27 20:40:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '5d0c3a9e7b21'
down_revision = "5d0c7a61e2b9"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('known_browser',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('cookie_digest', sa.LargeBinary(length=32), nullable=False),
    sa.Column('first_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], name=op.f('fk_known_browser_customer_id_customer'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_known_browser')),
    sa.UniqueConstraint('customer_id', 'cookie_digest', name='uq_known_browser_once')
    )


def downgrade():
    op.drop_table('known_browser')
