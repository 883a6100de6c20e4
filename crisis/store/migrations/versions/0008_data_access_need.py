"""data_access.need: the role's stated need to know, kept with every unmasked read

Rows written before this revision get "" (their need was not recorded).

Revision ID: 0008_data_access_need
Revises: 0007_entry_hash_unindexed
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0008_data_access_need"
down_revision: str | None = "0007_entry_hash_unindexed"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("data_access", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "need",
                sqlmodel.sql.sqltypes.AutoString(length=200),
                nullable=False,
                server_default="",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("data_access", schema=None) as batch_op:
        batch_op.drop_column("need")
