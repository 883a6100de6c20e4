"""A database outage is waited out, never turned into lost events or 500s.

PostgreSQL is reached through a small TCP proxy that the test cuts (every connection closed,
new ones refused) and restores; SQLite is made unavailable by another connection holding an
exclusive lock. The stream pipeline must store every valid event exactly once and dead-letter
nothing; the web app must answer 503 with ``Retry-After`` meanwhile and work again after.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

import crisis.store.sqlite
from crisis.kafka.broker import free_port
from crisis.settings import Settings
from crisis.store.db import make_engine, migrate
from streams.pipeline import BatchResult, Pipeline, Record, is_transient
from streams.worker import build_pipeline
from tests.conftest import PG_ENV, _pg_admin, _with_database
from tests.ingest_support import ingest_api
from tests.streams.test_pipeline import event, rec

CUT_SECONDS = 3.0


class TcpProxy:
    """127.0.0.1:<port> → target, with a switch: ``cut()`` closes every connection and stops
    listening (new connections are refused), ``restore()`` listens again on the same port;
    ``cut_on_request(marker)`` cuts when a client next sends bytes containing ``marker``
    (that statement is lost, as when the server dies under a transaction)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._armed: bytes | None = None
        self.was_cut = asyncio.Event()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        up_writer: asyncio.StreamWriter | None = None
        try:
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
            except OSError:
                writer.transport.abort()
                return
            self._writers.add(up_writer)
            if self._server is None or writer.transport.is_closing():  # cut meanwhile
                up_writer.transport.abort()
                writer.transport.abort()
                return
            self.connections += 1
            await asyncio.gather(
                self._pipe(reader, up_writer, upstream=True), self._pipe(up_reader, writer)
            )
        finally:
            self._writers.discard(writer)
            if up_writer is not None:
                self._writers.discard(up_writer)
            self._tasks.discard(task)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, upstream: bool = False
    ) -> None:
        try:
            while data := await reader.read(65536):
                if upstream and self._armed is not None and self._armed in data:
                    asyncio.get_running_loop().create_task(self.cut())
                    return
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()  # flushes what was written, then closes

    def cut_on_request(self, marker: bytes) -> None:
        self._armed = marker

    async def cut(self) -> None:
        self._armed = None
        self.was_cut.set()
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        if self._tasks:
            current = asyncio.current_task()
            others = [t for t in self._tasks if t is not current]
            if others:
                await asyncio.wait(others, timeout=5)

    async def restore(self) -> None:
        self.was_cut.clear()
        await self.start()

    async def close(self) -> None:
        await self.cut()


def _pg_url() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"{PG_ENV} is not set: PostgreSQL tests need a server")
    return url


@pytest.fixture
def pg_database() -> Iterator[str]:
    """An empty PostgreSQL database (asyncpg URL), direct to the server."""
    url = _pg_url()
    name = f"crisis_test_{secrets.token_hex(6)}"
    try:
        asyncio.run(_pg_admin(url, f'CREATE DATABASE "{name}"'))
    except OSError as exc:
        pytest.skip(f"PostgreSQL at {PG_ENV} does not answer: {exc!r}")
    try:
        yield _with_database(url, name)
    finally:
        asyncio.run(_pg_admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def pg_proxy(pg_database: str) -> AsyncIterator[tuple[TcpProxy, str]]:
    """A migrated database and (the proxy, the database's URL through the proxy)."""
    direct = make_url(pg_database)
    engine = make_engine(pg_database)
    await migrate(engine)
    await engine.dispose()
    proxy = TcpProxy(direct.host or "127.0.0.1", direct.port or 5432)
    await proxy.start()
    try:
        yield proxy, direct.set(host="127.0.0.1", port=proxy.port).render_as_string(False)
    finally:
        await proxy.close()


# -- the stream pipeline -------------------------------------------------------------------


class Deliverer:
    """The stream worker's retry decision (``streams.agents.attach_agents``' ``run_batch``)
    around the real pipeline: a transient error retries the whole batch with back-off;
    anything else retries it event by event and dead-letters an event failing on its own."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.transient: list[BaseException] = []
        self.other: list[BaseException] = []

    async def run_batch(self, records: Sequence[Record]) -> BatchResult:
        delay = 0.05
        while True:
            try:
                return await self.pipeline.process(records)
            except Exception as exc:
                if is_transient(exc):
                    self.transient.append(exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 0.5)
                    continue
                self.other.append(exc)
                if len(records) == 1:
                    dead = self.pipeline._dead(records[0], f"processing failed: {exc!r}", [])
                    await self.pipeline.store_dead_letters([dead["row"]])
                    return BatchResult(consumed=1, dead=[dead])
                total = BatchResult()
                for record in records:
                    part = await self.run_batch([record])
                    total.new += part.new
                    total.dead += part.dead
                return total


async def _counts(engine: AsyncEngine) -> tuple[int, int, int]:
    """(raw events, distinct (source, id) among them, dead letters)."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM raw_events),"
                    " (SELECT count(*) FROM (SELECT DISTINCT source, id FROM raw_events) AS d),"
                    " (SELECT count(*) FROM dead_letters)"
                )
            )
        ).one()
    return int(row[0]), int(row[1]), int(row[2])


async def _ids(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return {str(i) for i in (await conn.execute(text("SELECT id FROM raw_events"))).scalars()}


def _batches(n: int, size: int) -> list[list[dict[str, Any]]]:
    units = ("agder-froland", "ringerike", "oslo-friomsorg")
    return [
        [event("sensor.door_forced", unit=units[(b + i) % 3], door=f"d{i}") for i in range(size)]
        for b in range(n)
    ]


async def _feed(deliverer: Deliverer, batches: list[list[dict[str, Any]]], until: float) -> None:
    """Batches back to back, as the worker takes them, at least until ``until``."""
    for batch in batches:
        await deliverer.run_batch([rec(e, time.time()) for e in batch])
        if time.monotonic() < until:
            await asyncio.sleep(0.02)


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.parametrize("when", ["between-batches", "mid-transaction"])
async def test_pipeline_waits_out_a_postgresql_outage_and_loses_nothing(
    pg_proxy: tuple[TcpProxy, str], tmp_path: Path, when: str
) -> None:
    proxy, url = pg_proxy
    engine = make_engine(url)
    try:
        settings = Settings(data_dir=tmp_path / "var", database_url=url, secret_key="x")
        pipeline, _ = build_pipeline(settings, engine=engine)
        deliverer = Deliverer(pipeline)
        batches = _batches(40, 25)
        await deliverer.run_batch([rec(e) for e in batches[0]])  # the pool is warm
        feeding = asyncio.create_task(_feed(deliverer, batches[1:], time.monotonic() + 8))
        await asyncio.sleep(0.5)
        if when == "mid-transaction":
            # the batch's rows (not the pool's ping, not the duplicate check) carry the type
            proxy.cut_on_request(b"door_forced")
        else:
            await proxy.cut()
        await asyncio.wait_for(proxy.was_cut.wait(), 5)
        await asyncio.sleep(CUT_SECONDS)
        assert not feeding.done(), "the batches went on during the outage"
        await proxy.restore()
        await asyncio.wait_for(feeding, 60)

        raw, distinct, dead = await _counts(engine)
        sent = {e["id"] for batch in batches for e in batch}
        assert (raw, distinct, dead) == (len(sent), len(sent), 0)
        assert await _ids(engine) == sent
        assert deliverer.transient, "the cut never reached the pipeline"
        assert not deliverer.other, f"errors not recognised as transient: {deliverer.other!r}"
        if when == "mid-transaction":  # a statement was lost, not only a connect refused
            assert any(not isinstance(e, OSError) for e in deliverer.transient), deliverer.transient
    finally:
        await engine.dispose()


async def test_pipeline_waits_out_a_locked_sqlite_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The batch gives up waiting for SQLite's writer lock after WRITER_WAIT (30 s in
    # production) with "database is locked"; shortened so the lock outlasts it.
    monkeypatch.setattr(crisis.store.sqlite, "WRITER_WAIT", 0.3)
    path = tmp_path / "crisis.db"
    url = f"sqlite+aiosqlite:///{path}"
    engine = make_engine(url)
    await migrate(engine)
    try:
        settings = Settings(data_dir=tmp_path / "var", database_url=url, secret_key="x")
        pipeline, _ = build_pipeline(settings, engine=engine)
        deliverer = Deliverer(pipeline)
        batches = _batches(30, 20)
        await deliverer.run_batch([rec(e) for e in batches[0]])
        feeding = asyncio.create_task(_feed(deliverer, batches[1:], time.monotonic() + 5))
        await asyncio.sleep(0.3)
        locker = sqlite3.connect(path, timeout=10, isolation_level=None)
        try:
            locker.execute("BEGIN EXCLUSIVE")
            await asyncio.sleep(CUT_SECONDS)
            assert not feeding.done(), "the batches went on while the database was locked"
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        await asyncio.wait_for(feeding, 60)

        raw, distinct, dead = await _counts(engine)
        sent = {e["id"] for batch in batches for e in batch}
        assert (raw, distinct, dead) == (len(sent), len(sent), 0)
        assert deliverer.transient and all(
            "database is locked" in str(e) for e in deliverer.transient
        )
        assert not deliverer.other, f"errors not recognised as transient: {deliverer.other!r}"
    finally:
        await engine.dispose()


# -- the web app ---------------------------------------------------------------------------


def _assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "5"
    body = response.json()
    assert body["errors"][0]["field"] == "database"
    assert "unavailable" in body["errors"][0]["message"]


@pytest.mark.postgres
@pytest.mark.slow
async def test_web_answers_503_with_retry_after_while_postgresql_is_away(
    pg_proxy: tuple[TcpProxy, str], tmp_path: Path
) -> None:
    proxy, url = pg_proxy
    settings = Settings(
        data_dir=tmp_path / "var",
        database_url=url,
        secret_key="test-secret",
        # Kafka is away too: accepted events go to the outbox, which needs no database.
        kafka_bootstrap=f"127.0.0.1:{free_port()}",
        ingest_send_timeout=0.5,
        ingest_min_free_bytes=0,
    )
    async with ingest_api(settings) as api:
        headers = await api.user("op", "operator", unit="agder-froland")
        listed = await api.client.get("/api/v1/incidents", headers=headers)
        assert listed.status_code == 200, listed.text

        await proxy.cut()
        try:
            posted = await api.client.post(
                "/api/v1/events", json=event("sensor.door_forced", door="d1"), headers=headers
            )
            _assert_unavailable(posted)
            _assert_unavailable(await api.client.get("/api/v1/incidents", headers=headers))
            # a pooled connection that died and a fresh one refused answer alike
            _assert_unavailable(await api.client.get("/api/v1/incidents", headers=headers))
        finally:
            await proxy.restore()

        posted = await api.client.post(
            "/api/v1/events", json=event("sensor.door_forced", door="d2"), headers=headers
        )
        assert posted.status_code == 202, posted.text
        listed = await api.client.get("/api/v1/incidents", headers=headers)
        assert listed.status_code == 200, listed.text


async def test_web_answers_503_for_a_locked_sqlite_and_500_for_other_errors(
    tmp_path: Path,
) -> None:
    """The handlers on their own: a transient error (here SQLite's, wrapped as SQLAlchemy
    wraps it) is a 503; a database error that is the request's fault stays a 500."""
    settings = Settings(
        data_dir=tmp_path / "var",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'crisis.db'}",
        secret_key="test-secret",
    )
    from web.app import create_app

    app = create_app(settings)

    def locked() -> None:
        try:
            raise sqlite3.OperationalError("database is locked")
        except sqlite3.Error as exc:
            raise OperationalError("UPDATE x", {}, exc) from exc

    def bad_argument() -> None:
        import asyncpg

        try:
            raise asyncpg.exceptions.DataError("invalid input for query argument $1")
        except asyncpg.exceptions.InterfaceError as exc:
            raise InterfaceError("SELECT $1", ("x",), exc) from exc

    def refused() -> None:
        raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)")

    app.add_api_route("/test/locked", locked)
    app.add_api_route("/test/bad-argument", bad_argument)
    app.add_api_route("/test/refused", refused)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            _assert_unavailable(await client.get("/test/locked"))
            _assert_unavailable(await client.get("/test/refused"))
            assert (await client.get("/test/bad-argument")).status_code == 500


async def test_proxy_cut_closes_connections_and_refuses_new_ones() -> None:
    """What the outage tests rely on: a cut is a real refusal, a restore really listens."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.read(100))
        await writer.drain()
        writer.close()

    target = await asyncio.start_server(echo, "127.0.0.1", 0)
    proxy = TcpProxy("127.0.0.1", target.sockets[0].getsockname()[1])
    await proxy.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        await proxy.cut()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", proxy.port)
        await proxy.restore()
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"ping")
        assert await asyncio.wait_for(reader.read(), 5) == b"ping"
        writer.close()
    finally:
        await proxy.close()
        target.close()
