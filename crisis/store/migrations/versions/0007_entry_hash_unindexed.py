"""log_entries.hash without an index

Nothing looks an entry up by its hash (the chain is walked by incident and seq), and the
index cost every append a B-tree insert at a random place (the gain is in
docs/performance.md).

Revision ID: 0007_entry_hash_unindexed
Revises: 0006_board
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007_entry_hash_unindexed"
down_revision: str | None = "0006_board"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_log_entries_hash", table_name="log_entries")


def downgrade() -> None:
    op.create_index("ix_log_entries_hash", "log_entries", ["hash"], unique=False)
