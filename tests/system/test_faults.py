"""Issue 14: nothing answered 202 is ever lost, whatever dies — through ``crisis up`` itself.

Each test runs the whole tree, streams ``CRISIS_FAULT_EVENTS`` events (default 2000; ``make
faults`` runs 20000) from four senders, injects one fault mid-stream and asserts that every
accepted event was stored exactly once and the log verifies. See ``tests/faults.py`` for the
harness and its knobs (``CRISIS_FAULT_NO_ASSERT=1`` and ``CRISIS_FAULT_CODE_DIR`` measure a
baseline of another checkout).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import PG_ENV
from tests.faults import FAULTS, FaultConfig, run_scenario, tmpfs

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]

pytestmark = [pytest.mark.broker, pytest.mark.slow, pytest.mark.faults]


def _pg_url(backend: str) -> str | None:
    if backend != "postgresql":
        return None
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"{PG_ENV} is not set: PostgreSQL tests need a server")
    return url


@pytest.mark.parametrize("backend", BACKENDS)
def test_ingest_worker_killed_three_times(tmp_path: Path, backend: str) -> None:
    run_scenario(
        "kill-ingest-3x", backend, tmp_path, FAULTS["kill-ingest-3x"], pg_admin_url=_pg_url(backend)
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_broker_killed(tmp_path: Path, backend: str) -> None:
    run_scenario(
        "kill-broker", backend, tmp_path, FAULTS["kill-broker"], pg_admin_url=_pg_url(backend)
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_whole_tree_interrupted_and_started_again(tmp_path: Path, backend: str) -> None:
    run_scenario(
        "sigint-restart",
        backend,
        tmp_path,
        FAULTS["sigint-restart"],
        pg_admin_url=_pg_url(backend),
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_database_stopped(tmp_path: Path, backend: str) -> None:
    """PostgreSQL behind a proxy that is cut; SQLite held by ``BEGIN EXCLUSIVE`` elsewhere."""
    run_scenario(
        "db-stopped",
        backend,
        tmp_path,
        FAULTS["db-stopped"],
        pg_admin_url=_pg_url(backend),
        proxy=backend == "postgresql",
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_disk_full(tmp_path: Path, backend: str) -> None:
    """The data dir is a small tmpfs, filled with ballast mid-stream for a few seconds."""
    pg_url = _pg_url(backend)
    data_dir = tmp_path / "var"
    try:
        mount = tmpfs(data_dir, FaultConfig.from_env().tmpfs_mb)
        mount.__enter__()
    except OSError as exc:
        pytest.skip(str(exc))
    try:
        run_scenario(
            "disk-full",
            backend,
            tmp_path,
            FAULTS["disk-full"],
            pg_admin_url=pg_url,
            data_dir=data_dir,
        )
    finally:
        mount.__exit__(None, None, None)
