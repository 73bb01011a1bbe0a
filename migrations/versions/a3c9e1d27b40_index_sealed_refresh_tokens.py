"""partial index on refresh_tokens that still hold a sealed successor

Revision ID: a3c9e1d27b40
Revises: f81569aebc6f
Create Date: 2026-11-26 15:35:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a3c9e1d27b40'
down_revision = 'f81569aebc6f'
branch_labels = None
depends_on = None

WHERE = sa.text("sealed_successor IS NOT NULL")


def upgrade():
    with op.batch_alter_table('refresh_tokens', schema=None) as batch_op:
        batch_op.create_index('ix_refresh_tokens_sealed_connection', ['connection_id'],
                              unique=False, sqlite_where=WHERE, postgresql_where=WHERE)


def downgrade():
    with op.batch_alter_table('refresh_tokens', schema=None) as batch_op:
        batch_op.drop_index('ix_refresh_tokens_sealed_connection')
