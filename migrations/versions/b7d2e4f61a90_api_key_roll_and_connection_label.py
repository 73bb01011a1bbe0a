"""api key roll overlap, connection label

Revision ID: b7d2e4f61a90
Revises: 0fc4bca97c48
Create Date: 2026-11-28 07:15:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b7d2e4f61a90'
down_revision = '0fc4bca97c48'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('previous_digest', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('previous_last4', sa.String(length=4), nullable=True))
        batch_op.add_column(sa.Column('previous_revoke_at', sa.DateTime(), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_api_keys_previous_digest'),
                                          ['previous_digest'])

    with op.batch_alter_table('connections', schema=None) as batch_op:
        batch_op.add_column(sa.Column('label', sa.String(length=100), nullable=True))


def downgrade():
    with op.batch_alter_table('connections', schema=None) as batch_op:
        batch_op.drop_column('label')

    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_api_keys_previous_digest'), type_='unique')
        batch_op.drop_column('previous_revoke_at')
        batch_op.drop_column('previous_last4')
        batch_op.drop_column('previous_digest')
