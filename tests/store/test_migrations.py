"""The migrations build the schema the models declare, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

import crisis.log.models  # noqa: F401  (the tables' metadata)


def _meaningful(diff: list[Any]) -> list[Any]:
    """Alembic reads SQLite's unique constraint on ``dead_letters.fingerprint`` back as a
    unique index; that pair says nothing."""
    return [
        d
        for d in diff
        if not (
            isinstance(d, tuple)
            and d[0] in ("remove_index", "add_constraint")
            and getattr(getattr(d[1], "table", None), "name", None) == "dead_letters"
        )
    ]


async def test_the_migrated_schema_is_the_models_schema(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        diff = await conn.run_sync(
            lambda c: compare_metadata(MigrationContext.configure(c), SQLModel.metadata)
        )
    assert _meaningful(diff) == []


async def test_an_entrys_hash_is_not_indexed(engine: AsyncEngine) -> None:
    """Nothing looks entries up by hash; the index only slowed every append."""
    async with engine.connect() as conn:
        indexes = await conn.run_sync(lambda c: inspect(c).get_indexes("log_entries"))
    assert "ix_log_entries_hash" not in {i["name"] for i in indexes}
    assert not any(i["column_names"] == ["hash"] for i in indexes)
