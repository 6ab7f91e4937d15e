"""Idempotency keys and signature overrides on corrections; acquisition tags on images.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05 (written by hand to match db/models.py; checked by test_migrated_schema_matches_the_models)

Columns are only added (nullable) and the key gets a unique index rather than a constraint, so no table is
rebuilt: existing trails stay as they are, their rows simply have no key, no override and no tags.
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('corrections', sa.Column('idempotency_key', sa.String(length=128), nullable=True))
    op.add_column('corrections', sa.Column('override_of', sa.String(length=128), nullable=True))
    op.create_index('ix_corrections_idempotency_key', 'corrections', ['idempotency_key'], unique=True)
    op.add_column('images', sa.Column('tags', sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column('images', 'tags')
    op.drop_index('ix_corrections_idempotency_key', table_name='corrections')
    with op.batch_alter_table('corrections') as batch_op:
        batch_op.drop_column('override_of')
        batch_op.drop_column('idempotency_key')
