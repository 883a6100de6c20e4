"""stream worker: dead letters, correlation state, feed positions

Revision ID: 0003_streams
Revises: 0001
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import crisis.store.sqltypes


revision: str = '0003_streams'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('dead_letters',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
    sa.Column('event_id', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('type', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('unit', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('errors', sa.JSON(), nullable=False),
    sa.Column('raw', sa.Text(), nullable=False),
    sa.Column('topic', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('kafka_partition', sa.Integer(), nullable=True),
    sa.Column('kafka_offset', sa.Integer(), nullable=True),
    sa.Column('fingerprint', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('received_at', crisis.store.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('dead_letters', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dead_letters_type'), ['type'], unique=False)
        batch_op.create_index(batch_op.f('ix_dead_letters_unit'), ['unit'], unique=False)
        batch_op.create_index(batch_op.f('ix_dead_letters_received_at'), ['received_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_dead_letters_fingerprint'), ['fingerprint'], unique=True)

    op.create_table('correlation_state',
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=700), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.Column('due', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('key')
    )
    with op.batch_alter_table('correlation_state', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_correlation_state_due'), ['due'], unique=False)

    op.create_table('feed_positions',
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('updated_at', crisis.store.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )


def downgrade() -> None:
    op.drop_table('feed_positions')
    with op.batch_alter_table('correlation_state', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_correlation_state_due'))
    op.drop_table('correlation_state')
    with op.batch_alter_table('dead_letters', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dead_letters_fingerprint'))
        batch_op.drop_index(batch_op.f('ix_dead_letters_received_at'))
        batch_op.drop_index(batch_op.f('ix_dead_letters_unit'))
        batch_op.drop_index(batch_op.f('ix_dead_letters_type'))
    op.drop_table('dead_letters')
