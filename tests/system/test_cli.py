"""The ``crisis`` console script: log verify, user add, token create — as an operator runs them."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

CRISIS = [sys.executable, "-m", "crisis.cli"]


def _run(args: list[str], data_dir: Path, **kw: object) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRISIS_")}
    env["CRISIS_DATA_DIR"] = str(data_dir)
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [*CRISIS, *args], env=env, capture_output=True, text=True, timeout=120, **kw
    )


def test_console_script_is_installed() -> None:
    assert (Path(sys.executable).parent / "crisis").exists()


def test_user_add_and_token_create(tmp_path: Path) -> None:
    added = _run(
        [
            "user",
            "add",
            "kari",
            "--role",
            "operator",
            "--unit",
            "agder-froland",
            "--password",
            "correct horse",
        ],
        tmp_path,
    )
    assert added.returncode == 0, added.stderr
    token = _run(["token", "create", "kari"], tmp_path)
    assert token.returncode == 0, token.stderr
    last = token.stdout.strip().splitlines()[-1]
    assert last.startswith("crisis_") and len(last) > 40
    stored = (
        sqlite3.connect(tmp_path / "crisis.db")
        .execute("SELECT token_hash FROM api_tokens")
        .fetchall()
    )
    assert len(stored) == 1 and last not in stored[0][0]
    again = _run(
        ["user", "add", "kari", "--role", "operator", "--unit", "x", "--password", "correct horse"],
        tmp_path,
    )
    assert again.returncode == 2 and "exists" in again.stderr
    bad_role = _run(
        ["user", "add", "ola", "--role", "king", "--password", "correct horse"], tmp_path
    )
    assert bad_role.returncode == 2 and "unknown role" in bad_role.stderr


@pytest.fixture
def populated(tmp_path: Path) -> Path:
    """A SQLite log with two incidents of four entries each, written through the service."""
    import asyncio

    from crisis.log.append import append, open_incident
    from crisis.log.models import IncidentCreate
    from crisis.store.db import make_engine, make_sessionmaker, migrate

    async def build() -> None:
        engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'crisis.db'}")
        await migrate(engine)
        async with make_sessionmaker(engine)() as session:
            for n in range(2):
                incident, _ = await open_incident(
                    session,
                    incident=IncidentCreate(
                        type="fire_alarm", title=f"Brann {n}", unit="ringerike", severity=4
                    ),
                    actor="system:test",
                    incident_id=f"inc-{n}",
                )
                for k in range(3):
                    await append(
                        session,
                        incident_id=incident.id,
                        kind="observation",
                        actor="user:a",
                        text=f"obs {k}",
                    )
            await session.commit()
        await engine.dispose()

    asyncio.run(build())
    return tmp_path


def test_log_verify_intact(populated: Path) -> None:
    result = _run(["log", "verify"], populated)
    assert result.returncode == 0, result.stderr
    assert "2 incidents, 8 entries" in result.stdout


def _sql(path: Path, *statements: str) -> None:
    db = sqlite3.connect(path / "crisis.db")
    with db:
        for statement in statements:
            db.execute(statement)
    db.close()


def test_log_verify_names_a_modified_entry(populated: Path) -> None:
    _sql(populated, "UPDATE log_entries SET text = 'obs X' WHERE incident_id = 'inc-1' AND seq = 3")
    result = _run(["log", "verify"], populated)
    assert result.returncode == 1
    assert "incident inc-1, entry seq 3" in result.stderr and "modified" in result.stderr


def test_log_verify_names_a_deleted_entry(populated: Path) -> None:
    _sql(populated, "DELETE FROM log_entries WHERE incident_id = 'inc-0' AND seq = 2")
    result = _run(["log", "verify"], populated)
    assert result.returncode == 1
    assert "incident inc-0, entry seq 2" in result.stderr and "missing" in result.stderr


def test_log_verify_names_swapped_entries(populated: Path) -> None:
    _sql(
        populated,
        "UPDATE log_entries SET seq = -1 WHERE incident_id = 'inc-0' AND seq = 2",
        "UPDATE log_entries SET seq = 2 WHERE incident_id = 'inc-0' AND seq = 4",
        "UPDATE log_entries SET seq = 4 WHERE incident_id = 'inc-0' AND seq = -1",
    )
    result = _run(["log", "verify"], populated)
    assert result.returncode == 1
    assert "incident inc-0, entry seq 2" in result.stderr
