"""notify inbox: messages delivered to the built-in local inbox (inbox:// contacts)

Revision ID: 0013_notify_inbox
Revises: 0012_exercises
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import crisis.store.sqltypes

revision: str = "0013_notify_inbox"
down_revision: str | None = "0012_exercises"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC = crisis.store.sqltypes.UTCDateTime


def _string(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    op.create_table(
        "notify_inbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("update_id", _string(40), nullable=False),
        sa.Column("incident_id", _string(40), nullable=False),
        sa.Column("exercise", _string(120), nullable=True),
        sa.Column("recipient", _string(120), nullable=False),
        sa.Column("group", _string(40), nullable=False),
        sa.Column("channel", _string(20), nullable=False),
        sa.Column("address", _string(300), nullable=False),
        sa.Column("subject", _string(300), nullable=False),
        sa.Column("body", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("at", UTC(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["message_id"], ["notify_outbox.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("notify_inbox", schema=None) as batch_op:
        for column in ("message_id", "update_id", "incident_id", "recipient"):
            batch_op.create_index(batch_op.f(f"ix_notify_inbox_{column}"), [column], unique=False)


def downgrade() -> None:
    op.drop_table("notify_inbox")
