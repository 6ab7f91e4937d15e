"""Whether a generation's film lay outside the report model's domain (its gate): the worklist sorts on it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05 (written by hand to match db/models.py; checked by test_migrated_schema_matches_the_models)

Nullable: generations written before the gate, or by a model without one, have no answer.
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('generations', sa.Column('out_of_domain', sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('generations') as batch_op:
        batch_op.drop_column('out_of_domain')
