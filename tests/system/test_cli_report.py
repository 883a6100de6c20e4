"""``crisis report`` and ``crisis log verify --incident ID --head HASH``, run as an operator
runs them (the console script as a subprocess), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from crisis.domain.rules import NOTIFIER_ACTOR
from crisis.log.append import append
from crisis.store.db import make_engine, make_sessionmaker, migrate
from tests.review.scenario import INMATE, build_incident
from tests.review.test_report import pdf_text

CRISIS = [sys.executable, "-m", "crisis.cli"]


class Log:
    def __init__(self, url: str, data_dir: Path) -> None:
        self.url, self.data_dir = url, data_dir

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRISIS_")}
        env["CRISIS_DATA_DIR"] = str(self.data_dir)
        env["CRISIS_DATABASE_URL"] = self.url
        return subprocess.run(
            [*CRISIS, *args], env=env, capture_output=True, text=True, timeout=300, check=False
        )

    def sql(self, statement: str) -> None:
        async def go() -> None:
            engine = make_engine(self.url)
            async with engine.begin() as conn:
                await conn.execute(text(statement))
            await engine.dispose()

        asyncio.run(go())

    def late_receipt(self) -> None:
        async def go() -> None:
            engine = make_engine(self.url)
            async with make_sessionmaker(engine)() as session:
                await append(
                    session,
                    incident_id="inc-rep",
                    kind="message",
                    actor=NOTIFIER_ACTOR,
                    text="Levert",
                    data={"update_id": "u-1", "group": "kdi", "status": "sent"},
                )
                await session.commit()
            await engine.dispose()

        asyncio.run(go())

    def build(self, **kw: object) -> None:
        async def go() -> None:
            engine = make_engine(self.url)
            await migrate(engine)
            async with make_sessionmaker(engine)() as session:
                await build_incident(session, **kw)  # type: ignore[arg-type]
            await engine.dispose()

        asyncio.run(go())


@pytest.fixture
def db(database_url: str, tmp_path: Path) -> Log:
    log = Log(database_url, tmp_path)
    log.build()
    return log


def _head(verify_stdout: str) -> str:
    match = re.search(r"^head: seq \d+ hash ([0-9a-f]{64})$", verify_stdout, re.M)
    assert match, verify_stdout
    return match.group(1)


def test_report_head_matches_verify_and_tampering_is_named(db: Log, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    exported = db.run("report", "inc-rep", "--format", "json", "-o", str(out))
    assert exported.returncode == 0, exported.stderr
    integrity = json.loads(out.read_text())["integrity"]
    verified = db.run("log", "verify", "--incident", "inc-rep")
    assert verified.returncode == 0, verified.stderr
    assert _head(verified.stdout) == integrity["head_hash"]
    assert f"{integrity['entry_count']} entries" in verified.stdout

    pdf = tmp_path / "r.pdf"
    assert db.run("report", "inc-rep", "-o", str(pdf), "--lang", "en").returncode == 0
    assert pdf.read_bytes().startswith(b"%PDF")
    assert integrity["head_hash"].encode() in pdf_text(pdf.read_bytes())

    # The log grows after the export (a late delivery receipt): the old head still checks.
    db.late_receipt()
    ok = db.run("log", "verify", "--incident", "inc-rep", "--head", integrity["head_hash"])
    assert ok.returncode == 0, ok.stderr
    grown = f"report head: entry seq {integrity['head_seq']} of {integrity['head_seq'] + 1}"
    assert grown in ok.stdout and "grown by 1 entries" in ok.stdout

    db.sql("UPDATE log_entries SET text = 'Ingen røyk' WHERE incident_id = 'inc-rep' AND seq = 2")
    broken = db.run("log", "verify", "--incident", "inc-rep", "--head", integrity["head_hash"])
    assert broken.returncode == 1
    assert "first broken entry: incident inc-rep, entry seq 2" in broken.stderr
    assert "modified" in broken.stderr


def test_a_head_not_in_the_chain(db: Log) -> None:
    stranger = "ab" * 32
    result = db.run("log", "verify", "--incident", "inc-rep", "--head", stranger)
    assert result.returncode == 1
    assert f"{stranger} is not the hash of any entry of incident inc-rep" in result.stderr
    assert db.run("log", "verify", "--head", stranger).returncode == 2
    assert db.run("log", "verify", "--incident", "nope").returncode == 1


def test_exit_codes_and_masking(db: Log, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    missing = db.run("report", "nope", "-o", str(out))
    assert missing.returncode == 1 and "no incident nope" in missing.stderr
    assert db.run("report", "inc-rep", "--format", "docx", "-o", str(out)).returncode == 2
    assert db.run("report", "inc-rep", "--format", "json").returncode == 2  # no -o
    nobody = db.run("report", "inc-rep", "--as", "ghost", "-o", str(out))
    assert nobody.returncode == 1 and "no user 'ghost'" in nobody.stderr
    assert not out.exists()

    assert db.run("report", "inc-rep", "--format", "json", "-o", str(out)).returncode == 0
    assert INMATE not in out.read_text()  # no --as: everything masked
    added = db.run("user", "add", "sjef", "--role", "admin", "--password", "correct horse")
    assert added.returncode == 0, added.stderr
    assert (
        db.run("report", "inc-rep", "--format", "json", "--as", "sjef", "-o", str(out)).returncode
        == 0
    )
    assert INMATE in out.read_text()
    audit = db.run("audit", "access", "--incident", "inc-rep")
    assert audit.returncode == 0
    assert "user:sjef (admin)  report-json" in audit.stdout and INMATE in audit.stdout


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_progress_line_for_a_big_incident(database_url: str, tmp_path: Path) -> None:
    log = Log(database_url, tmp_path)
    log.build(incident_id="inc-big", observations=1000)
    out = tmp_path / "big.html"
    result = log.run("report", "inc-big", "--format", "html", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "crisis report inc-big: 1011 entries read, chain intact" in result.stderr
    assert "rendering html" in result.stderr
