"""a partial index over the lessons-learned entries, listed across incidents

Revision ID: 0011_lesson_index
Revises: 0010_login_sessions
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_lesson_index"
down_revision: str | None = "0010_login_sessions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHERE = "kind IN ('finding', 'follow_up', 'follow_up_update')"


def upgrade() -> None:
    op.create_index(
        "ix_log_entries_lessons",
        "log_entries",
        ["kind", "incident_id"],
        sqlite_where=sa.text(WHERE),
        postgresql_where=sa.text(WHERE),
    )


def downgrade() -> None:
    op.drop_index("ix_log_entries_lessons", table_name="log_entries")
