# The annotation tables: projects, people, items, assignments, reviews.
#
# Revision ID: 0001
# Revises:
# Create Date: 2026-11-23
from alembic import op
import sqlalchemy as sa

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('annotate_project',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('name', sa.String(200), nullable=False, unique=True),
        sa.Column('labels', sa.JSON(), nullable=False),
        sa.Column('guide', sa.Text(), nullable=False),
        sa.Column('overlap', sa.Integer(), nullable=False),
        sa.Column('lease_seconds', sa.Integer(), nullable=False),
        sa.Column('source', sa.String(200), nullable=False),
        sa.Column('ordering', sa.String(20), nullable=False),
        sa.Column('suggest_to_annotators', sa.Boolean(), nullable=False),
        sa.Column('created', sa.DateTime(), nullable=False))
    op.create_table('annotate_person',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('project_id', sa.Integer(), sa.ForeignKey('annotate_project.id'), nullable=False),
        sa.Column('name', sa.String(200), nullable=False),
        sa.Column('role', sa.String(20), nullable=False),
        sa.Column('token_hash', sa.String(64), nullable=False, unique=True),
        sa.Column('created', sa.DateTime(), nullable=False),
        sa.UniqueConstraint('project_id', 'name'))
    op.create_table('annotate_item',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('project_id', sa.Integer(), sa.ForeignKey('annotate_project.id'), nullable=False),
        sa.Column('sha256', sa.String(64), nullable=False),
        sa.Column('media_type', sa.String(100), nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('taken', sa.Integer(), nullable=False),
        sa.Column('done', sa.Integer(), nullable=False),
        sa.Column('margin', sa.Float(), nullable=True),
        sa.Column('suggestion', sa.Integer(), nullable=True),
        sa.Column('added', sa.DateTime(), nullable=False),
        sa.UniqueConstraint('project_id', 'sha256'))
    op.create_index('ix_annotate_item_queue', 'annotate_item', ['project_id', 'position'])
    op.create_table('annotate_assignment',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('project_id', sa.Integer(), sa.ForeignKey('annotate_project.id'), nullable=False),
        sa.Column('item_id', sa.Integer(), sa.ForeignKey('annotate_item.id'), nullable=False),
        sa.Column('person_id', sa.Integer(), sa.ForeignKey('annotate_person.id'), nullable=False),
        sa.Column('slot', sa.Integer(), nullable=True),
        sa.Column('state', sa.String(10), nullable=False),
        sa.Column('label', sa.Integer(), nullable=True),
        sa.Column('leased', sa.DateTime(), nullable=False),
        sa.Column('expires', sa.DateTime(), nullable=False),
        sa.Column('answered', sa.DateTime(), nullable=True),
        sa.UniqueConstraint('item_id', 'person_id'),
        sa.UniqueConstraint('item_id', 'slot'),
        sqlite_autoincrement=True)
    op.create_index('ix_annotate_assignment_person', 'annotate_assignment', ['person_id', 'state'])
    op.create_index('ix_annotate_assignment_lease', 'annotate_assignment', ['project_id', 'state', 'expires'])
    op.create_table('annotate_review',
        sa.Column('item_id', sa.Integer(), sa.ForeignKey('annotate_item.id'), primary_key=True),
        sa.Column('project_id', sa.Integer(), sa.ForeignKey('annotate_project.id'), nullable=False),
        sa.Column('reviewer_id', sa.Integer(), sa.ForeignKey('annotate_person.id'), nullable=False),
        sa.Column('label', sa.Integer(), nullable=False),
        sa.Column('at', sa.DateTime(), nullable=False))


def downgrade():
    for t in ('annotate_review', 'annotate_assignment', 'annotate_item', 'annotate_person', 'annotate_project'): op.drop_table(t)
