"""A full disk refuses new events with 507 instead of accepting what cannot be kept.

The data directory (the outbox's home) is a real 8 MiB tmpfs; Kafka is away, so every
accepted event has to be written there. Needs root to mount (skipped with the reason else).
"""

from __future__ import annotations

import asyncio
import errno
import os
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy.exc import OperationalError

from crisis.kafka.broker import free_port
from crisis.store.errors import is_disk_full
from tests.conftest import ApiHarness
from tests.ingest_support import event, ingest_api, ingest_settings

MiB = 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A fresh 8 MiB tmpfs, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    where = tmp_path / "disk"
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path, leave: int = 0) -> Path:
    """Write a file until only about ``leave`` bytes are free on ``disk`` (0: completely)."""
    path = disk / f"filler-{uuid.uuid4().hex}"
    chunk = b"\0" * (64 * 1024)
    with open(path, "wb") as f:
        try:
            while os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize > leave:
                f.write(chunk)
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return path


async def _post(api: ApiHarness, headers: dict[str, str], n: int = 100) -> Any:
    """``n`` events in one request (100: tens of KiB, more than a page of slack)."""
    return await api.client.post(
        "/api/v1/events", json=[event(i) for i in range(n)], headers=headers
    )


def _depth(api: ApiHarness) -> int:
    depth: int = api.app.state.producer.outbox_depth()
    return depth


def _assert_insufficient_storage(response: Any) -> None:
    assert response.status_code == 507, response.text
    assert int(response.headers["retry-after"]) > 0
    error = response.json()["errors"][0]
    assert error["field"] == "storage" and "nothing accepted" in error["message"]


async def test_a_full_disk_answers_507_and_accepts_nothing(
    small_disk: Path, tmp_path: Path
) -> None:
    settings = ingest_settings(
        tmp_path,
        f"127.0.0.1:{free_port()}",  # Kafka away: events must go to the outbox on the disk
        data_dir=small_disk,
        ingest_send_timeout=0.5,
        ingest_min_free_bytes=0,  # no check up front: the write itself must fail
    )
    async with ingest_api(settings) as api:
        headers = await api.user("op", "operator", unit="agder-froland")
        filler = fill(small_disk)
        refused = await _post(api, headers)
        _assert_insufficient_storage(refused)
        assert "disk is full" in refused.json()["errors"][0]["message"]
        assert _depth(api) == 0

        filler.unlink()
        accepted = await _post(api, headers)
        assert accepted.status_code == 202, accepted.text
        assert _depth(api) == 100


async def test_too_little_free_space_is_refused_up_front(small_disk: Path, tmp_path: Path) -> None:
    settings = ingest_settings(
        tmp_path,
        f"127.0.0.1:{free_port()}",
        data_dir=small_disk,
        ingest_send_timeout=0.5,
        ingest_min_free_bytes=3 * MiB,
    )
    async with ingest_api(settings) as api:
        headers = await api.user("op", "operator", unit="agder-froland")
        assert (await _post(api, headers, 1)).status_code == 202
        filler = fill(small_disk, leave=2 * MiB)
        await asyncio.sleep(1.1)  # the free-space reading is reused for about a second
        refused = await _post(api, headers)
        _assert_insufficient_storage(refused)
        assert "CRISIS_INGEST_MIN_FREE_BYTES" in refused.json()["errors"][0]["message"]
        assert _depth(api) == 1

        filler.unlink()
        await asyncio.sleep(1.1)
        accepted = await _post(api, headers)
        assert accepted.status_code == 202, accepted.text
        assert _depth(api) == 101


def _sqlite_full() -> sqlite3.Error:
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute("PRAGMA max_page_count = 2")
        conn.execute("CREATE TABLE t (x)")
        conn.executemany("INSERT INTO t VALUES (?)", [("x" * 5000,)] * 10)
    except sqlite3.Error as exc:
        return exc
    finally:
        conn.close()
    raise AssertionError("SQLite did not fill up")


def _chained(inner: BaseException, outer: type[Exception] = RuntimeError) -> BaseException:
    try:
        try:
            raise inner
        except BaseException as exc:
            raise outer("could not make 20 records durable") from exc
    except BaseException as exc:
        return exc


@pytest.mark.parametrize(
    ("exc", "full"),
    [
        (_sqlite_full(), True),
        (OperationalError("INSERT", {}, _sqlite_full()), True),
        (_chained(_sqlite_full()), True),
        (OSError(errno.ENOSPC, "No space left on device"), True),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), True),
        (_chained(OSError(errno.ENOSPC, "No space left on device")), True),
        (asyncpg.exceptions.DiskFullError("could not extend file"), True),
        (sqlite3.OperationalError("database is locked"), False),
        (OSError(errno.EIO, "Input/output error"), False),
        (ValueError("bad"), False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_is_disk_full(exc: BaseException, full: bool) -> None:
    assert is_disk_full(exc) is full
