"""The sentences a correction covers as a whole: the ones a bulk accept decided, the ones a sign left unreviewed.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05 (written by hand to match db/models.py; checked by test_migrated_schema_matches_the_models)

Nullable: corrections written before it have none. An `accept` without a sentence index and without this list is
the old accept-everything-still-standing and replays as it did (db/replay.py); a `sign` without it predates the
sign safeguard (issue 16).
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('corrections', sa.Column('sentences', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('corrections') as batch_op:
        batch_op.drop_column('sentences')
