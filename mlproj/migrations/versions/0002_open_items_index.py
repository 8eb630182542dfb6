# Each item carries its project's overlap, so that a partial index holds only the items with a free slot: the claim
# of the next item then starts at the first open one instead of stepping over every full item before it.
#
# Revision ID: 0002
# Revises: 0001
# Create Date: 2026-11-23
from alembic import op
import sqlalchemy as sa

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('annotate_item') as b:
        b.add_column(sa.Column('overlap', sa.Integer(), nullable=False, server_default='2'))
    op.execute('UPDATE annotate_item SET overlap = (SELECT p.overlap FROM annotate_project p WHERE p.id = annotate_item.project_id)')
    op.create_index('ix_annotate_item_open', 'annotate_item', ['project_id', 'position'],
                    sqlite_where=sa.text('taken < overlap'), postgresql_where=sa.text('taken < overlap'))


def downgrade():
    op.drop_index('ix_annotate_item_open', 'annotate_item')
    with op.batch_alter_table('annotate_item') as b: b.drop_column('overlap')
