"""The log anchor on both backends: deletions and rewinds fail ``crisis log verify``.

Entries are written through ``crisis.log``; tampering is raw SQL, as someone with write access
to the database would do it; verify runs as the CLI runs it (``crisis.cli._verify``) and the
``--every`` loop as a real child process.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from crisis.cli import _verify
from crisis.log import anchor
from crisis.log.append import append, open_incident
from crisis.log.models import IncidentCreate, LogEntry
from crisis.log.verify import verify_log
from crisis.settings import Settings
from crisis.store.db import make_engine, make_sessionmaker, migrate

IDS = ("inc-a", "inc-b", "inc-c")


async def _seed(engine: AsyncEngine, ids: tuple[str, ...] = IDS, entries: int = 3) -> None:
    async with make_sessionmaker(engine)() as session:
        for incident_id in ids:
            await open_incident(
                session,
                incident=IncidentCreate(
                    type="fire_alarm", title=f"Brann {incident_id}", unit="ringerike", severity=4
                ),
                actor="system:test",
                incident_id=incident_id,
            )
            await session.commit()
            for k in range(entries - 1):
                await append(
                    session,
                    incident_id=incident_id,
                    kind="observation",
                    actor="user:kari",
                    text=f"obs {k} ÆØÅ",
                )
                await session.commit()


async def _append(engine: AsyncEngine, incident_id: str, text_: str = "senere") -> LogEntry:
    async with make_sessionmaker(engine)() as session:
        entry = await append(
            session, incident_id=incident_id, kind="observation", actor="user:ola", text=text_
        )
        await session.commit()
        return entry


async def _sql(engine: AsyncEngine, *statements: str) -> None:
    async with engine.begin() as conn:
        for statement in statements:
            await conn.execute(text(statement))


async def _checkpoint(engine: AsyncEngine, settings: Settings) -> anchor.Checkpoint:
    return await anchor.checkpoint(engine, anchor.AnchorLog(anchor.anchor_path(settings)))


async def _cli_verify(settings: Settings, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = await _verify(settings)
    out = capsys.readouterr()
    return code, out.out + out.err


def _lines(settings: Settings) -> list[dict[str, Any]]:
    raw = anchor.anchor_path(settings).read_bytes()
    return [json.loads(line) for line in raw.splitlines()]


async def test_deleted_incident_fails_verify_naming_it(
    engine: AsyncEngine, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    await _seed(engine)
    first = await _checkpoint(engine, settings)
    assert first.written and first.line == 1 and first.changed.keys() == set(IDS)
    code, out = await _cli_verify(settings, capsys)
    assert code == 0, out
    assert "3 anchored heads present" in out and f"heads: {first.root}" in out

    await _sql(
        engine,
        "DELETE FROM log_entries WHERE incident_id = 'inc-b'",
        "DELETE FROM incidents WHERE id = 'inc-b'",
    )
    # The chains alone cannot see it: what remains is intact.
    async with make_sessionmaker(engine)() as session:
        assert (await verify_log(session)).ok
    code, out = await _cli_verify(settings, capsys)
    assert code == 1
    assert "BROKEN: incident inc-b: deleted; anchored at seq 3" in out
    assert "inc-a" not in out and "inc-c" not in out
    # The root printed is over the heads now there: it no longer equals the anchored one.
    assert f"heads: {first.root}" not in out
    # A later checkpoint cannot launder it: the deleted head stays anchored.
    await _checkpoint(engine, settings)
    code, out = await _cli_verify(settings, capsys)
    assert code == 1 and "incident inc-b: deleted" in out


async def test_deleted_last_entry_with_rewound_head_fails_verify(
    engine: AsyncEngine, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    await _seed(engine)
    await _checkpoint(engine, settings)
    await _sql(
        engine,
        "DELETE FROM log_entries WHERE incident_id = 'inc-a' AND seq = 3",
        "UPDATE incidents SET head_seq = 2, head_hash = (SELECT hash FROM log_entries"
        " WHERE incident_id = 'inc-a' AND seq = 2) WHERE id = 'inc-a'",
    )
    async with make_sessionmaker(engine)() as session:
        assert (await verify_log(session)).ok  # the gap the anchor closes
    code, out = await _cli_verify(settings, capsys)
    assert code == 1
    assert "BROKEN: incident inc-a: entry seq 3 missing or changed (anchored at seq 3" in out

    # The anchor refuses to record the rewound head, and what the system appends on top.
    again = await _checkpoint(engine, settings)
    assert not again.written and any("inc-a" in m for m in again.refused)
    await _append(engine, "inc-a", "ny seq 3")
    assert any("inc-a" in m for m in (await _checkpoint(engine, settings)).refused)
    await _append(engine, "inc-a", "seq 4")
    refused = await _checkpoint(engine, settings)
    assert not refused.written
    assert any("anchored entry seq 3 is missing or changed" in m for m in refused.refused)
    code, out = await _cli_verify(settings, capsys)
    assert code == 1 and "incident inc-a: entry seq 3 missing or changed" in out
    assert len(_lines(settings)) == 1


async def test_entries_after_the_checkpoint_are_fine_and_only_moved_heads_are_written(
    engine: AsyncEngine, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    await _seed(engine)
    await _checkpoint(engine, settings)
    await _append(engine, "inc-c")
    await _seed(engine, ids=("inc-d",), entries=1)
    code, out = await _cli_verify(settings, capsys)
    assert code == 0, out
    second = await _checkpoint(engine, settings)
    assert second.written and second.line == 2
    assert second.changed.keys() == {"inc-c", "inc-d"} and second.changed["inc-c"][0] == 4
    assert (await _checkpoint(engine, settings)).written is False
    lines = _lines(settings)
    assert [line["n"] for line in lines] == [1, 2]
    assert lines[1]["heads"].keys() == {"inc-c", "inc-d"} and lines[1]["incidents"] == 4
    assert lines[1]["prev"] == anchor.line_digest(
        anchor.anchor_path(settings).read_bytes().splitlines()[0]
    )
    code, out = await _cli_verify(settings, capsys)
    assert code == 0 and f"heads: {second.root}" in out and "4 anchored heads present" in out


async def test_torn_last_line_is_reported_not_fatal_and_cut_by_the_next_checkpoint(
    engine: AsyncEngine, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    await _seed(engine)
    await _checkpoint(engine, settings)
    path = anchor.anchor_path(settings)
    with path.open("ab") as fh:
        fh.write(b'{"at":"2026-11-22T02:41:07.1')
    code, out = await _cli_verify(settings, capsys)
    assert code == 0, out
    assert "last line is torn (28 bytes" in out
    await _append(engine, "inc-a")
    result = await _checkpoint(engine, settings)
    assert result.written and result.dropped_torn == 28
    assert [line["n"] for line in _lines(settings)] == [1, 2]
    code, out = await _cli_verify(settings, capsys)
    assert code == 0 and "torn" not in out


async def test_damaged_anchor_file_fails_verify_and_is_not_appended_to(
    engine: AsyncEngine, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    await _seed(engine)
    await _checkpoint(engine, settings)
    await _append(engine, "inc-a")
    await _checkpoint(engine, settings)
    path = anchor.anchor_path(settings)
    _, second = path.read_bytes().splitlines()
    path.write_bytes(second + b"\n")  # line 1 removed
    code, out = await _cli_verify(settings, capsys)
    assert code == 1 and "BROKEN: log anchor" in out and "line 1" in out
    with pytest.raises(anchor.AnchorDamaged):
        await _checkpoint(engine, settings)
    assert path.read_bytes() == second + b"\n"


async def test_verify_without_anchor_warns(
    engine: AsyncEngine, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    await _seed(engine, entries=2)
    code, out = await _cli_verify(settings, capsys)
    assert code == 0
    assert "WARNING: no log anchor" in out and "cannot be detected" in out
    async with make_sessionmaker(engine)() as session:
        report = await verify_log(session)
    assert f"heads: {report.heads_root}" in out


# --- the CLI as a process -----------------------------------------------------------------


def _env(data_dir: Path, database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRISIS_")}
    env["CRISIS_DATA_DIR"] = str(data_dir)
    env["CRISIS_DATABASE_URL"] = database_url
    return env


def _start_every(env: dict[str, str], seconds: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "crisis.cli", "log", "anchor", "--every", str(seconds)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait(predicate: Callable[[], bool], proc: subprocess.Popen[str], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("timed out")


def _count(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


async def test_every_loop_writes_only_moved_heads_and_stops_on_sigterm(
    engine: AsyncEngine, settings: Settings, database_url: str
) -> None:
    await _seed(engine)
    env = _env(settings.data_dir, database_url)
    once = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "crisis.cli",
        "log",
        "anchor",
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(once.communicate(), 60)
    assert once.returncode == 0, stderr
    assert b"anchored: line 1" in stdout
    path = anchor.anchor_path(settings)
    proc = _start_every(env, 0.2)
    try:
        await asyncio.sleep(1.0)  # several periods with nothing moved: nothing written
        assert _count(path) == 1
        await _append(engine, "inc-b")
        await asyncio.to_thread(_wait, lambda: _count(path) == 2, proc)
        await asyncio.sleep(0.8)
        assert _count(path) == 2
        await _append(engine, "inc-c")
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.to_thread(proc.communicate, timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "stopped" in out
    heads = [line["heads"] for line in _lines(settings)]
    assert [set(h) for h in heads[1:]] == [{"inc-b"}, {"inc-c"}]  # the last one at SIGTERM
    assert heads[1]["inc-b"][0] == 4 and heads[2]["inc-c"][0] == 4


def test_every_loop_survives_a_database_outage(tmp_path: Path) -> None:
    """The database is not there at first (its directory is missing): the loop says so, keeps
    running, and anchors as soon as it is back; SIGINT still ends it with 0."""
    db_dir = tmp_path / "db"
    url = f"sqlite+aiosqlite:///{db_dir / 'crisis.db'}"
    data_dir = tmp_path / "var"
    proc = _start_every(_env(data_dir, url), 0.2)
    path = data_dir / anchor.ANCHOR_FILE
    errors: list[str] = []
    assert proc.stderr is not None and proc.stdout is not None
    reader = threading.Thread(target=lambda: errors.extend(proc.stderr), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        # The loop must have met the missing database before it comes back (however slow start-up).
        _wait(lambda: any("checkpoint failed" in line for line in errors), proc, timeout=60)
        assert proc.poll() is None
        assert not path.exists() or _count(path) == 0

        async def bring_back() -> None:
            db_dir.mkdir()
            eng = make_engine(url)
            await migrate(eng)
            await _seed(eng, ids=("inc-x",))
            await eng.dispose()

        asyncio.run(bring_back())
        _wait(lambda: path.exists() and b'"inc-x":[3,' in path.read_bytes(), proc)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        out = proc.stdout.read()
        reader.join(timeout=10)
        err = "".join(errors)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(timeout=10)
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == 0, err
    assert "checkpoint failed" in err and err.count("checkpoint failed") == 1  # said once
    assert "checkpoints work again" in out
    # (a line with no heads may come first: the tables were there before the incident)
    assert json.loads(path.read_bytes().splitlines()[-1])["heads"]["inc-x"][0] == 3
