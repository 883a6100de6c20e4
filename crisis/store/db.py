"""Engines, sessions and migrations. Built by factories from Settings, never at import time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import URL, create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from crisis.settings import Settings
from crisis.store import sqlite_inloop

MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(
    settings_or_url: Settings | str,
    *,
    in_loop: bool = False,
    autocheckpoint: bool = True,
    **kwargs: Any,
) -> AsyncEngine:
    """The async engine. ``in_loop`` (SQLite only): statements run at once in the event
    loop's thread instead of aiosqlite's (``crisis.sqlite_inloop`` says when that pays);
    ``autocheckpoint=False``: its commits never copy the WAL back (for a process that runs
    ``checkpoint_sqlite`` itself, so no commit in the loop's thread pays for it)."""
    url = (
        settings_or_url.effective_database_url
        if isinstance(settings_or_url, Settings)
        else settings_or_url
    )
    if url.startswith("sqlite"):
        if isinstance(settings_or_url, Settings):
            settings_or_url.data_dir.mkdir(parents=True, exist_ok=True)
        if in_loop:
            engine = create_async_engine(
                url, connect_args={"async_creator_fn": sqlite_inloop.connect}, **kwargs
            )
            _tune_sqlite_engine(
                engine.sync_engine, busy_timeout_ms=0, autocheckpoint=autocheckpoint
            )
            return engine
        engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)
        _tune_sqlite(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(url, **kwargs)


def make_sync_sqlite_engine(
    url: str | URL, *, busy_timeout_ms: int = 30_000, autocheckpoint: bool = True
) -> Engine:
    """A synchronous SQLite engine with the same settings as ``make_engine``'s, for code that
    runs a whole batch on one plain connection (the stream pipeline). ``autocheckpoint=False``:
    its commits never copy the WAL back into the database (whoever commits when the WAL
    passes 1,000 pages does, and that commit is many times slower than the others); the owner
    then runs ``checkpoint_sqlite`` from elsewhere."""
    engine = create_engine(
        url, connect_args={"timeout": busy_timeout_ms / 1000, "check_same_thread": False}
    )
    _tune_sqlite_engine(engine, busy_timeout_ms, autocheckpoint=autocheckpoint)
    return engine


def checkpoint_sqlite(engine: Engine) -> None:
    """Copy the WAL into the database without blocking readers or the writer (PASSIVE)."""
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")


def _tune_sqlite(engine: AsyncEngine) -> None:
    _tune_sqlite_engine(engine.sync_engine)


def _tune_sqlite_engine(
    engine: Engine, busy_timeout_ms: int = 30_000, *, autocheckpoint: bool = True
) -> None:
    """WAL lets the board read while the worker writes; foreign keys are off by default."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        if not autocheckpoint:
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest Alembic revision (idempotent)."""

    def _upgrade(connection: Connection) -> None:
        command.upgrade(alembic_config(connection), "head")

    async with engine.begin() as conn:
        await conn.run_sync(_upgrade)


async def migrate_database(settings: Settings) -> None:
    """Migrate with a short-lived engine (for processes that start before their event loop)."""
    engine = make_engine(settings)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()
