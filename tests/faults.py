"""Fault injection through ``crisis up`` itself (issue 14: nothing answered 202 is ever lost).

A scenario starts the real process tree (``python -m crisis.cli up``: broker, ingest worker,
reactions worker, notifier dispatcher, web), streams N CloudEvents at ``POST /api/v1/events``
from concurrent senders that count a batch as accepted only on 202 and otherwise retry the same
batch (same ids), injects one fault while the stream flows, waits (bounded) until every
accepted id is stored, and then counts what was lost or duplicated.

The code under test is taken from ``CRISIS_FAULT_CODE_DIR`` (default: this repository), run as
``cd <code dir> && PYTHONPATH=<code dir> python -m crisis.cli up``, so the same harness can
measure an older checkout (a git worktree) for a baseline.

Knobs (environment):

- ``CRISIS_FAULT_EVENTS`` events per scenario (default 2000; ``make faults`` runs 20000)
- ``CRISIS_FAULT_STREAM_SECONDS`` how long the offered stream lasts when nothing fails (12)
- ``CRISIS_FAULT_DEADLINE`` seconds the senders keep retrying before giving up (180)
- ``CRISIS_FAULT_SETTLE`` most seconds to wait for accepted ids to be stored (120), giving
  up earlier when nothing new was stored for ``CRISIS_FAULT_STALL`` seconds (45)
- ``CRISIS_FAULT_DB_STOP_SECONDS`` how long the database is stopped (20)
- ``CRISIS_FAULT_FULL_SECONDS`` how long the disk is kept full (5), ``CRISIS_FAULT_TMPFS_MB`` (128)
- ``CRISIS_FAULT_REPORT`` a file the figures are appended to, one JSON object a line
- ``CRISIS_FAULT_NO_ASSERT=1`` only print and record the figures (baseline measurements)
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from crisis.kafka.broker import free_port
from tests.ingest_support import event

REPO_ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
#: Log entry kinds that carry one source event (``data.source``, ``data.id``).
EVENT_ENTRY_KINDS = ("incident_opened", "source_event")
#: Answers that mean the harness itself is wrong; anything else is retried.
HARNESS_ERRORS = frozenset({400, 413, 415, 422})


def _env_num(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    return float(value) if value else default


@dataclass(frozen=True)
class FaultConfig:
    events: int = 2000
    batch: int = 50
    senders: int = 4
    stream_seconds: float = 12.0
    deadline: float = 180.0
    settle: float = 120.0
    stall: float = 45.0
    db_stop_seconds: float = 20.0
    full_seconds: float = 5.0
    tmpfs_mb: int = 128
    retry_after_cap: float = 1.0
    no_assert: bool = False
    report: Path | None = None
    code_dir: Path = REPO_ROOT

    @classmethod
    def from_env(cls) -> FaultConfig:
        report = os.environ.get("CRISIS_FAULT_REPORT", "").strip()
        code = os.environ.get("CRISIS_FAULT_CODE_DIR", "").strip()
        return cls(
            events=int(_env_num("CRISIS_FAULT_EVENTS", 2000)),
            stream_seconds=_env_num("CRISIS_FAULT_STREAM_SECONDS", 12.0),
            deadline=_env_num("CRISIS_FAULT_DEADLINE", 180.0),
            settle=_env_num("CRISIS_FAULT_SETTLE", 120.0),
            stall=_env_num("CRISIS_FAULT_STALL", 45.0),
            db_stop_seconds=_env_num("CRISIS_FAULT_DB_STOP_SECONDS", 20.0),
            full_seconds=_env_num("CRISIS_FAULT_FULL_SECONDS", 5.0),
            tmpfs_mb=int(_env_num("CRISIS_FAULT_TMPFS_MB", 128)),
            no_assert=os.environ.get("CRISIS_FAULT_NO_ASSERT", "") not in ("", "0"),
            report=Path(report) if report else None,
            code_dir=Path(code).resolve() if code else REPO_ROOT,
        )


# --- processes ------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of ``pid``; None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), int(fields[19])


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def descendants(pid: int) -> set[int]:
    """All descendants of ``pid``, read from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st is not None:
                parents[int(entry.name)] = st[0]
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    st = _stat(pid)
    if st is None:
        return False
    try:
        return Path(f"/proc/{pid}/status").read_text().find("State:\tZ") < 0
    except OSError:
        return False


def _part_of(cmd: list[str]) -> str | None:
    """Which part of the tree a command line is (the fallback when there is no up.json)."""
    if not cmd:
        return None
    if Path(cmd[0]).name.startswith("tansu"):
        return "broker"
    joined = " ".join(cmd[1:])
    if "-m streams" in joined and "--role ingest" in joined:
        return "ingest"
    if "-m streams" in joined and "--role reactions" in joined:
        return "reactions"
    if "-m notifiers" in joined:
        return "dispatcher"
    if "-m web" in joined:
        return "web"
    return None


class Tree:
    """One ``crisis up`` process tree on a data dir; tracks every process it ever had."""

    def __init__(self, cfg: FaultConfig, data_dir: Path, port: int, env: dict[str, str]) -> None:
        self.cfg = cfg
        self.data_dir = data_dir
        self.port = port
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.planned_stop = False
        self.logs: list[Path] = []
        self._seen: dict[int, int] = {}  # pid → start time, for the final clean-up
        self._lock = threading.Lock()
        self._tracking = threading.Event()
        self._tracker: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, log_dir: Path) -> None:
        self.starts += 1
        log = log_dir / f"up-{self.starts}.log"
        self.logs.append(log)
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [
                    PYTHON,
                    "-m",
                    "crisis.cli",
                    "up",
                    "--data-dir",
                    str(self.data_dir),
                    "--port",
                    str(self.port),
                ],
                cwd=self.cfg.code_dir,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._remember(self.proc.pid)
        self.planned_stop = False
        if self._tracker is None:
            self._tracking.set()
            self._tracker = threading.Thread(target=self._track, daemon=True)
            self._tracker.start()

    def _remember(self, pid: int) -> None:
        st = _stat(pid)
        if st is not None:
            with self._lock:
                self._seen.setdefault(pid, st[1])

    def _track(self) -> None:
        while self._tracking.is_set():
            proc = self.proc
            if proc is not None and proc.poll() is None:
                for pid in descendants(proc.pid):
                    self._remember(pid)
            time.sleep(0.3)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def died_unplanned(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None and not self.planned_stop

    def wait_healthy(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise AssertionError(f"crisis up exited during start:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as r:  # noqa: S310
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise AssertionError(f"crisis up not healthy within {timeout}s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        if not self.logs:
            return ""
        try:
            return self.logs[-1].read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    # --- the parts --------------------------------------------------------------------------

    def up_json(self) -> dict[str, Any] | None:
        path = self.data_dir / "run" / "up.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def part_pid(self, name: str) -> int | None:
        """The running pid of a part: from ``run/up.json`` when present, else from /proc."""
        if self.proc is None:
            return None
        data = self.up_json()
        if data is not None and data.get("supervisor") == self.proc.pid:  # not a stale file
            part = (data.get("parts") or {}).get(name)
            if isinstance(part, dict):
                pid = part.get("pid")
                running = part.get("state", "running") == "running"
                return pid if isinstance(pid, int) and running and _alive(pid) else None
        for pid in sorted(descendants(self.proc.pid)):
            if _part_of(_cmdline(pid)) == name and _alive(pid):
                return pid
        return None

    def wait_part(self, name: str, *, other_than: int | None = None, timeout: float = 20.0) -> int:
        """The pid of a running ``name`` (a new one when ``other_than`` is given), or 0."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.running():
            pid = self.part_pid(name)
            if pid is not None and pid != other_than:
                return pid
            time.sleep(0.1)
        return 0

    def kill_part(self, name: str, *, other_than: int | None = None) -> int:
        pid = self.wait_part(name, other_than=other_than)
        if pid:
            self._remember(pid)
            os.kill(pid, signal.SIGKILL)
        return pid

    # --- stopping ---------------------------------------------------------------------------

    def interrupt_group(self, timeout: float = 60.0) -> int | None:
        """Ctrl-C: SIGINT to the whole process group; the exit code (None: did not exit)."""
        assert self.proc is not None
        self.planned_stop = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def interrupt(self, timeout: float = 60.0) -> int | None:
        """SIGINT to the supervisor; its exit code (None: it did not exit in time)."""
        assert self.proc is not None
        self.planned_stop = True
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill_all(self) -> None:
        """SIGKILL everything this tree ever ran that is still the same process."""
        self._tracking.clear()
        if self._tracker is not None:
            self._tracker.join(timeout=5)
        if self.proc is not None and self.proc.poll() is None:
            for pid in descendants(self.proc.pid):
                self._remember(pid)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        with self._lock:
            seen = dict(self._seen)
        for pid, started in seen.items():
            st = _stat(pid)
            if st is not None and st[1] == started:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)

    def leftovers(self) -> list[int]:
        with self._lock:
            seen = dict(self._seen)
        return [
            pid
            for pid, started in seen.items()
            if (st := _stat(pid)) is not None and st[1] == started and _alive(pid)
        ]


# --- the database -------------------------------------------------------------------------


class PgProxy:
    """A TCP proxy in front of PostgreSQL that can be cut (connections reset, port closed)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 5432) -> None:
        self.target = (host, port)
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._transports: set[asyncio.BaseTransport] = set()

    def start(self) -> None:
        self._thread.start()
        self._call(self._listen())

    def _call(self, coro: Awaitable[Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)  # type: ignore[arg-type]

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True
        )

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer.transport, up_writer.transport)
        self._transports.update(pair)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, ConnectionError):
                pass
            finally:
                dst.transport.abort()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            self._transports.difference_update(pair)

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for transport in list(self._transports):
            transport.abort()  # type: ignore[attr-defined]
        self._transports.clear()

    def cut(self) -> None:
        """Reset every connection and refuse new ones."""
        self._call(self._cut())

    def restore(self) -> None:
        self._call(self._listen())

    def close(self) -> None:
        if self._thread.is_alive():
            self._call(self._cut())
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=5)
        self.loop.close()


@dataclass
class Database:
    """Where the tree keeps its data and how the harness reads it back."""

    backend: str  # "sqlite" | "postgresql"
    sqlite_path: Path | None = None
    pg_dsn: str | None = None  # plain postgresql:// DSN for asyncpg, direct to the server

    async def stored(self, prefix: str) -> tuple[Counter[str], Counter[str]]:
        """(raw rows per id, event log entries per id) of this run's ids."""
        like = prefix + "%"
        kinds = EVENT_ENTRY_KINDS
        if self.backend == "sqlite":
            assert self.sqlite_path is not None
            return await asyncio.to_thread(self._sqlite_stored, like, kinds)
        import asyncpg

        conn = await asyncpg.connect(self.pg_dsn, timeout=10)
        try:
            raws = await conn.fetch(
                "SELECT id, count(*) AS n FROM raw_events WHERE id LIKE $1 GROUP BY id", like
            )
            entries = await conn.fetch(
                "SELECT data::jsonb->>'id' AS id, count(*) AS n FROM log_entries"
                " WHERE kind = ANY($2::text[]) AND data::jsonb->>'id' LIKE $1"
                " GROUP BY data::jsonb->>'id'",
                like,
                list(kinds),
            )
        finally:
            await conn.close()
        return (
            Counter({r["id"]: r["n"] for r in raws}),
            Counter({r["id"]: r["n"] for r in entries}),
        )

    def _sqlite_stored(
        self, like: str, kinds: tuple[str, ...]
    ) -> tuple[Counter[str], Counter[str]]:
        assert self.sqlite_path is not None
        if not self.sqlite_path.exists():
            return Counter(), Counter()
        conn = sqlite3.connect(self.sqlite_path, timeout=60)
        try:
            raws = conn.execute(
                "SELECT id, count(*) FROM raw_events WHERE id LIKE ? GROUP BY id", (like,)
            ).fetchall()
            marks = ",".join("?" for _ in kinds)
            entries = conn.execute(
                "SELECT json_extract(data, '$.id'), count(*) FROM log_entries"
                f" WHERE kind IN ({marks}) AND json_extract(data, '$.id') LIKE ?"
                " GROUP BY 1",
                (*kinds, like),
            ).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return Counter(), Counter()
            raise
        finally:
            conn.close()
        return Counter(dict(raws)), Counter(dict(entries))

    def hold_exclusive(self, seconds: float) -> float:
        """SQLite: hold ``BEGIN EXCLUSIVE`` from another connection; seconds actually held."""
        assert self.sqlite_path is not None
        conn = sqlite3.connect(self.sqlite_path, timeout=60, isolation_level=None)
        try:
            conn.execute("BEGIN EXCLUSIVE")
            held = time.monotonic()
            time.sleep(seconds)
            conn.execute("ROLLBACK")
            return time.monotonic() - held
        finally:
            conn.close()


# --- the stream ---------------------------------------------------------------------------


@dataclass
class StreamState:
    accepted: set[str] = field(default_factory=set)
    retried_batches: int = 0
    unsent_batches: int = 0
    accepted_batches: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    aborted: str = ""


def batches(cfg: FaultConfig, prefix: str) -> list[list[dict[str, Any]]]:
    out = []
    for start in range(0, cfg.events, cfg.batch):
        out.append(
            [
                event(i, id=f"{prefix}{i:07d}")
                for i in range(start, min(cfg.events, start + cfg.batch))
            ]
        )
    return out


async def stream(
    cfg: FaultConfig,
    tree: Tree,
    token: str,
    prefix: str,
    *,
    wall_deadline: float,
) -> StreamState:
    """Send every batch, paced over ``cfg.stream_seconds``; retry each until 202 or deadline."""
    state = StreamState()
    todo = batches(cfg, prefix)
    rate = cfg.events / cfg.stream_seconds  # events/s offered while nothing fails
    started = time.monotonic()
    next_index = 0
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    async def sender(client: httpx.AsyncClient) -> None:
        nonlocal next_index
        while next_index < len(todo) and not state.aborted:
            index = next_index
            next_index += 1
            batch = todo[index]
            due = started + index * cfg.batch / rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            body = json.dumps(batch).encode()
            tries = 0
            while True:
                if time.monotonic() > wall_deadline or state.aborted:
                    return
                if tree.died_unplanned():
                    state.aborted = "crisis up exited (not asked to)"
                    return
                tries += 1
                if tries == 2:
                    state.retried_batches += 1
                wait = 0.25
                try:
                    response = await client.post(
                        f"{tree.url}/api/v1/events", content=body, headers=headers
                    )
                except httpx.HTTPError as exc:
                    state.statuses[type(exc).__name__] += 1
                else:
                    state.statuses[str(response.status_code)] += 1
                    if response.status_code == 202:
                        state.accepted.update(e["id"] for e in batch)
                        state.accepted_batches += 1
                        break
                    if response.status_code in HARNESS_ERRORS:
                        raise AssertionError(
                            f"the harness sent a bad batch: {response.status_code} "
                            f"{response.text[:500]}"
                        )
                    try:
                        wait = float(response.headers.get("Retry-After", wait))
                    except ValueError:
                        pass
                await asyncio.sleep(min(max(wait, 0.05), cfg.retry_after_cap))

    limits = httpx.Limits(max_connections=cfg.senders, max_keepalive_connections=cfg.senders)
    timeout = httpx.Timeout(20.0, connect=3.0)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        await asyncio.gather(*(sender(client) for _ in range(cfg.senders)))
    state.unsent_batches = len(todo) - state.accepted_batches
    return state


# --- one scenario ---------------------------------------------------------------------------


@dataclass
class Scenario:
    """What a fault needs: the tree, the database, the knobs, where to write notes."""

    name: str
    cfg: FaultConfig
    tree: Tree
    db: Database
    data_dir: Path
    log_dir: Path
    proxy: PgProxy | None = None
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        self.notes.append(f"{time.strftime('%H:%M:%S')} {text}")


Fault = Callable[[Scenario], Coroutine[Any, Any, None]]


def token_for(cfg: FaultConfig, env: dict[str, str]) -> str:
    result = subprocess.run(
        [PYTHON, "-m", "crisis.cli", "token", "create", "admin", "--label", "faults"],
        cwd=cfg.code_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip().splitlines()[-1].strip()


def log_verify(cfg: FaultConfig, env: dict[str, str]) -> tuple[int, str]:
    result = subprocess.run(
        [PYTHON, "-m", "crisis.cli", "log", "verify"],
        cwd=cfg.code_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return result.returncode, (result.stdout + result.stderr).strip()[-1000:]


def tree_env(cfg: FaultConfig, data_dir: Path, database_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRISIS_")}
    env.update(
        PYTHONPATH=str(cfg.code_dir),
        CRISIS_DATA_DIR=str(data_dir),
        # Neither the rate limit nor sensor-storm suppression may hide what the stream does:
        # every event must reach the log as its own entry to tell a duplicate.
        CRISIS_INGEST_RATE_PER_SOURCE="1000000",
        CRISIS_INGEST_BURST_PER_SOURCE="1000000",
        CRISIS_STORM_MAX_EVENTS="1000000000",
    )
    if database_url:
        env["CRISIS_DATABASE_URL"] = database_url
    return env


async def _settle(
    sc: Scenario, accepted: set[str], prefix: str
) -> tuple[Counter[str], Counter[str]]:
    """Wait until every accepted id is stored, at most ``settle`` s, ``stall`` s without news."""
    cfg = sc.cfg
    deadline = time.monotonic() + cfg.settle
    last_count, last_change = -1, time.monotonic()
    while True:
        try:
            raws, entries = await sc.db.stored(prefix)
        except Exception as exc:  # a locked or briefly unreachable database: ask again
            sc.note(f"read-back failed: {exc!r}")
            await asyncio.sleep(1)
            if time.monotonic() > deadline:
                raise
            continue
        count = len(accepted & raws.keys())
        if count != last_count:
            last_count, last_change = count, time.monotonic()
        now = time.monotonic()
        if count == len(accepted) or now > deadline or now - last_change > cfg.stall:
            if count == len(accepted):
                await asyncio.sleep(1.0)  # let log entries of the last rows land too
                raws, entries = await sc.db.stored(prefix)
            return raws, entries
        await asyncio.sleep(1.0)


async def _run(sc: Scenario, fault: Fault, token: str, prefix: str) -> dict[str, Any]:
    cfg = sc.cfg
    started = time.monotonic()
    send = asyncio.create_task(
        stream(cfg, sc.tree, token, prefix, wall_deadline=started + cfg.deadline)
    )
    # Mid-stream: once a quarter of the events were offered (paced), inject the fault.
    await asyncio.sleep(cfg.stream_seconds * 0.25)
    sc.note("fault begins")
    fault_task = asyncio.create_task(fault(sc))
    state = await send
    await fault_task
    sc.note(f"stream over: {len(state.accepted)} accepted, aborted={state.aborted!r}")
    unplanned_exits = 1 if state.aborted or sc.tree.died_unplanned() else 0
    harness_restarts = 0
    if not sc.tree.running():
        # What an operator would do: start it again, so that what it kept can come in.
        harness_restarts = 1
        sc.note("crisis up is down after the stream; the harness starts it again")
        sc.tree.start(sc.log_dir)
        await asyncio.to_thread(sc.tree.wait_healthy)
    raws, entries = await _settle(sc, state.accepted, prefix)
    seconds = time.monotonic() - started
    stored = state.accepted & raws.keys()
    lost = len(state.accepted) - len(stored)
    duplicated = sum(1 for i in state.accepted if raws.get(i, 0) > 1 or entries.get(i, 0) > 1)
    return {
        "events": cfg.events,
        "accepted": len(state.accepted),
        "stored": len(stored),
        "lost": lost,
        "duplicated": duplicated,
        "retried_batches": state.retried_batches,
        "seconds": round(seconds, 1),
        "unsent_batches": state.unsent_batches,
        "stored_without_log_entry": sum(1 for i in stored if entries.get(i, 0) == 0),
        "statuses": dict(state.statuses),
        "aborted": state.aborted,
        "unplanned_exits": unplanned_exits,
        "harness_restarts": harness_restarts,
    }


@contextlib.contextmanager
def pg_database(admin_url: str) -> Iterator[tuple[str, str]]:
    """A fresh PostgreSQL database: (asyncpg DSN, its name); dropped afterwards."""
    from tests.conftest import _pg_admin, _pg_dsn, _with_database

    name = f"crisis_fault_{secrets.token_hex(6)}"
    asyncio.run(_pg_admin(admin_url, f'CREATE DATABASE "{name}"'))
    try:
        yield _pg_dsn(_with_database(admin_url, name)), name
    finally:
        asyncio.run(_pg_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextlib.contextmanager
def tmpfs(path: Path, size_mb: int) -> Iterator[None]:
    """``path`` as a small tmpfs; raises ``OSError`` naming why when it cannot be mounted."""
    path.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise OSError(f"cannot mount a tmpfs on {path}: {result.stderr.strip() or 'mount failed'}")
    try:
        yield
    finally:
        for args in (["umount", str(path)], ["umount", "-l", str(path)]):
            if subprocess.run(args, capture_output=True, check=False).returncode == 0:
                break


def run_scenario(
    name: str,
    backend: str,
    work: Path,
    fault: Fault,
    *,
    pg_admin_url: str | None = None,
    data_dir: Path | None = None,
    proxy: bool = False,
) -> dict[str, Any]:
    """Start the tree, stream with ``fault`` injected, settle, stop; the figures (asserted)."""
    cfg = FaultConfig.from_env()
    data_dir = data_dir or work / "var"
    data_dir.mkdir(parents=True, exist_ok=True)
    log_dir = work / "logs"
    log_dir.mkdir(exist_ok=True)
    with contextlib.ExitStack() as stack:
        pg: PgProxy | None = None
        if backend == "postgresql":
            assert pg_admin_url
            dsn, dbname = stack.enter_context(pg_database(pg_admin_url))
            db = Database(backend, pg_dsn=dsn)
            tree_url = dsn
            if proxy:
                pg = PgProxy()
                pg.start()
                stack.callback(pg.close)
                base = dsn.rsplit("@", 1)
                tree_url = f"{base[0]}@127.0.0.1:{pg.port}/{dbname}"
        else:
            db = Database(backend, sqlite_path=data_dir / "crisis.db")
            tree_url = None
        env = tree_env(cfg, data_dir, tree_url)
        tree = Tree(cfg, data_dir, free_port(), env)
        stack.callback(tree.kill_all)
        sc = Scenario(name, cfg, tree, db, data_dir, log_dir, proxy=pg)
        tree.start(log_dir)
        tree.wait_healthy()
        token = token_for(cfg, env)
        prefix = f"flt-{name}-{secrets.token_hex(3)}-"
        figures = asyncio.run(_run(sc, fault, token, prefix))
        if backend == "postgresql":
            env = tree_env(cfg, data_dir, db.pg_dsn)  # verify straight against the server
        stop_code = tree.interrupt(timeout=60)
        verify_rc, verify_out = log_verify(cfg, env)
        figures.update(
            scenario=name,
            backend=backend,
            code_dir=str(cfg.code_dir),
            log_verify=verify_rc,
            stop_exit=stop_code,
            notes=sc.notes,
        )
        line = (
            f"FAULT {name} [{backend}] N={cfg.events}: accepted {figures['accepted']} / "
            f"stored {figures['stored']} / lost {figures['lost']} / "
            f"duplicated {figures['duplicated']} / retried-batches {figures['retried_batches']} "
            f"/ {figures['seconds']} s  (unsent batches {figures['unsent_batches']}, "
            f"unplanned exits {figures['unplanned_exits']}, log verify {verify_rc}, "
            f"statuses {figures['statuses']})"
        )
        print(f"\n{line}", flush=True)
        for text in sc.notes:
            print(f"    {text}", flush=True)
        if cfg.report is not None:
            with open(cfg.report, "a") as fh:
                fh.write(json.dumps(figures) + "\n")
        if cfg.no_assert:
            return figures
        tail = tree.log_tail()
        assert figures["lost"] == 0, f"{line}\n{tail}"
        assert figures["duplicated"] == 0, f"{line}\n{tail}"
        assert figures["accepted"] == cfg.events, f"not every batch was accepted: {line}\n{tail}"
        assert figures["unplanned_exits"] == 0, f"crisis up did not survive: {line}\n{tail}"
        assert verify_rc == 0, verify_out
        assert stop_code is not None, f"crisis up did not stop on SIGINT\n{tail}"
        tree.kill_all()
        assert tree.leftovers() == [], "processes left behind"
        return figures


# --- the faults -----------------------------------------------------------------------------


async def kill_ingest_three_times(sc: Scenario, spacing: float = 1.5) -> None:
    previous: int | None = None
    for n in range(3):
        pid = await asyncio.to_thread(sc.tree.kill_part, "ingest", other_than=previous)
        if not pid:
            sc.note(
                f"no running ingest worker to kill (kill {n + 1});"
                f" crisis up running: {sc.tree.running()}"
            )
            return
        sc.note(f"SIGKILL ingest worker pid {pid} ({n + 1}/3)")
        previous = pid
        await asyncio.sleep(spacing)


async def kill_broker(sc: Scenario) -> None:
    pid = await asyncio.to_thread(sc.tree.kill_part, "broker")
    sc.note(f"SIGKILL broker pid {pid}" if pid else "no running broker to kill")


async def interrupt_and_restart(sc: Scenario) -> None:
    code = await asyncio.to_thread(sc.tree.interrupt_group, 60.0)
    sc.note(f"SIGINT to the process group: crisis up exited with {code}")
    if code is None:
        raise AssertionError("crisis up did not exit within 60 s of SIGINT")
    await asyncio.sleep(1.0)
    sc.tree.start(sc.log_dir)
    await asyncio.to_thread(sc.tree.wait_healthy)
    sc.note("crisis up started again on the same data dir")


async def stop_database(sc: Scenario) -> None:
    seconds = sc.cfg.db_stop_seconds
    if sc.proxy is not None:
        await asyncio.to_thread(sc.proxy.cut)
        sc.note(f"PostgreSQL cut for {seconds:g} s")
        await asyncio.sleep(seconds)
        await asyncio.to_thread(sc.proxy.restore)
        sc.note("PostgreSQL back")
    else:
        sc.note(f"SQLite: BEGIN EXCLUSIVE for {seconds:g} s")
        held = await asyncio.to_thread(sc.db.hold_exclusive, seconds)
        sc.note(f"SQLite released after {held:.1f} s held")


def _fill(path: Path) -> int:
    written = 0
    chunk = b"\0" * (1 << 20)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while True:
            written += os.write(fd, chunk)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
    finally:
        os.close(fd)
    return written


async def fill_disk(sc: Scenario) -> None:
    ballast = sc.data_dir / "ballast"
    try:
        written = await asyncio.to_thread(_fill, ballast)
        sc.note(f"disk full: {written >> 20} MiB of ballast")
        await asyncio.sleep(sc.cfg.full_seconds)
    finally:
        with contextlib.suppress(OSError):
            ballast.unlink()
    sc.note("ballast deleted")


FAULTS: dict[str, Fault] = {
    "kill-ingest-3x": kill_ingest_three_times,
    "kill-broker": kill_broker,
    "sigint-restart": interrupt_and_restart,
    "db-stopped": stop_database,
    "disk-full": fill_disk,
}
