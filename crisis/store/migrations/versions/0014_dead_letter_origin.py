"""dead_letters.origin: who refused the event (worker, bridge:mqtt, bridge:media, ingest)

Revision ID: 0014_dead_letter_origin
Revises: 0013_notify_inbox
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0014_dead_letter_origin"
down_revision: str | None = "0013_notify_inbox"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("dead_letters", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("origin", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=True)
        )
    # Until now only the worker wrote this table.
    op.execute("UPDATE dead_letters SET origin = 'worker' WHERE origin IS NULL")


def downgrade() -> None:
    with op.batch_alter_table("dead_letters", schema=None) as batch_op:
        batch_op.drop_column("origin")
