"""server-side browser sessions, login throttling, token expiry and last use

Tokens made before this revision get no expiry (they keep working until revoked).

Revision ID: 0010_login_sessions
Revises: 0009_dead_letter_event_key
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import crisis.store.sqltypes

revision: str = "0010_login_sessions"
down_revision: str | None = "0009_dead_letter_event_key"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "web_sessions",
        sa.Column("id_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", crisis.store.sqltypes.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", crisis.store.sqltypes.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", crisis.store.sqltypes.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id_hash"),
    )
    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_web_sessions_user_id"), ["user_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_web_sessions_expires_at"), ["expires_at"], unique=False
        )

    op.create_table(
        "login_throttle",
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_attempt_at", crisis.store.sqltypes.UTCDateTime(timezone=True), nullable=False),
        sa.Column("locked_until", crisis.store.sqltypes.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key"),
    )
    with op.batch_alter_table("login_throttle", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_login_throttle_last_attempt_at"), ["last_attempt_at"], unique=False
        )

    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("expires_at", crisis.store.sqltypes.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("last_used_at", crisis.store.sqltypes.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_column("last_used_at")
        batch_op.drop_column("expires_at")
    op.drop_table("login_throttle")
    op.drop_table("web_sessions")
