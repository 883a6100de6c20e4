"""dead_letters (source, event_id) indexed: the outbox asks by it every half second

Revision ID: 0009_dead_letter_event_key
Revises: 0008_data_access_need
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009_dead_letter_event_key"
down_revision: str | None = "0008_data_access_need"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_dead_letters_source_event_id", "dead_letters", ["source", "event_id"])


def downgrade() -> None:
    op.drop_index("ix_dead_letters_source_event_id", table_name="dead_letters")
