"""An upgrade reaches the models' schema from every earlier migration, on PostgreSQL.

An operator's database may stand at any earlier revision when a new image starts (the
compose file's ``migrate`` service runs ``crisis migrate``). For each revision an empty schema
is brought to it, then to head, and the result is compared with the models.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlmodel import SQLModel

from crisis.store.db import alembic_config, make_engine
from crisis.store.registry import model_modules
from tests.conftest import PG_ENV, _pg_admin, _with_database
from tests.store.test_migrations import _meaningful

pytestmark = pytest.mark.postgres


def _revisions() -> list[str]:
    """Every revision, oldest first."""
    script = ScriptDirectory.from_config(alembic_config())
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def test_the_history_is_one_line() -> None:
    """One base and one head, each revision on the one before: "every earlier migration"
    below is then every state a deployed database can be in."""
    script = ScriptDirectory.from_config(alembic_config())
    revisions = _revisions()
    assert script.get_heads() == [revisions[-1]]
    assert script.get_bases() == [revisions[0]]
    for older, newer in itertools.pairwise(revisions):
        assert script.get_revision(newer).down_revision == older  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """One throwaway PostgreSQL database for the module; each test empties its schema."""
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"{PG_ENV} is not set: the upgrade tests need a PostgreSQL server")
    name = f"crisis_test_{secrets.token_hex(6)}"
    asyncio.run(_pg_admin(url, f'CREATE DATABASE "{name}"'))
    try:
        yield _with_database(url, name)
    finally:
        asyncio.run(_pg_admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _from_revision_to_head(conn: Connection, revision: str) -> list[Any]:
    conn.execute(text("DROP SCHEMA public CASCADE"))
    conn.execute(text("CREATE SCHEMA public"))
    cfg = alembic_config(conn)
    command.upgrade(cfg, revision)
    at = MigrationContext.configure(conn).get_current_revision()
    assert at == revision, f"upgrade to {revision} stopped at {at}"
    command.upgrade(cfg, "head")
    assert MigrationContext.configure(conn).get_current_revision() == _revisions()[-1]
    return list(compare_metadata(MigrationContext.configure(conn), SQLModel.metadata))


@pytest.mark.parametrize("revision", _revisions())
async def test_upgrade_from_an_earlier_migration_reaches_the_models(
    revision: str, pg_url: str
) -> None:
    model_modules()
    engine = make_engine(pg_url)
    try:
        async with engine.begin() as conn:
            diff = await conn.run_sync(_from_revision_to_head, revision)
    finally:
        await engine.dispose()
    # The dead_letters unique constraint reads back as a unique index, as from base.
    assert _meaningful(diff) == [], f"from {revision}, head differs from the models: {diff}"
