"""The one append service: every writer of the log shares one chain per incident.

The web (``append``), the stream pipeline (a batch), the notifiers (a delivery receipt) and
the playbook engine (its setup) all write to the same incident, interleaved; the chain that
results is checked by ``verify_log`` and by ``crisis log verify`` as an operator runs it.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select

from crisis import log
from crisis.cli import main
from crisis.domain.organisation import load_organisation
from crisis.log.append import append
from crisis.log.models import Incident
from crisis.log.verify import verify_log
from crisis.settings import Settings
from crisis.store.db import make_sessionmaker
from notifiers import logbook
from playbooks import engine as pb
from playbooks.loader import load_library
from streams.pipeline import Record
from streams.worker import build_pipeline


def _alarm() -> Record:
    event = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/units/agder-froland/sensors/s1",
        "type": "no.kriminalomsorgen.sensor.personal_alarm",
        "time": "2026-11-22T02:41:07Z",
        "unit": "agder-froland",
        "data": {"area": "A-blokk"},
    }
    return Record(value=json.dumps(event).encode(), timestamp=1.0, topic="crisis.events")


async def test_every_writer_extends_one_chain_that_verifies(
    engine: AsyncEngine,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = Settings(data_dir=tmp_path / "var", database_url=database_url, secret_key="x")
    pipeline, _ = build_pipeline(settings, engine=engine)
    org = load_organisation()
    library = load_library(org=org)
    sessions = make_sessionmaker(engine)

    assert (await pipeline.process([_alarm()])).opened == ["violence_threat"]  # pipeline
    async with sessions() as session:
        [incident] = (await session.exec(select(Incident))).all()
        opening = (await log.timeline(session, incident.id))[0]
        await append(  # the web's path for a person's entry
            session,
            incident_id=incident.id,
            kind="observation",
            actor="user:kari",
            text="Vakt på vei",
            known_units=org.units.keys(),
        )
        await session.commit()
    async with sessions() as session:  # a delivery receipt
        receipt = {"update_id": 1, "recipient": "kari", "status": "sent", "attempt": 1}
        await logbook.write(session, [logbook.Receipt(incident.id, "SMS sendt", receipt)])
        await session.commit()
    async with sessions() as session:  # the playbook engine's setup
        assert await pb.react(session, entry=opening, org=org, library=library)
        await session.commit()
    assert (await pipeline.process([_alarm()])).entries == 1  # the pipeline again

    async with sessions() as session:
        entries = await log.timeline(session, incident.id)
        report = await verify_log(session)
        stored = await session.get(Incident, incident.id, populate_existing=True)
    actors = {e.actor.split(":")[0] + ":" for e in entries}
    assert {"system:", "user:", "rule:"} <= actors
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    assert stored is not None and (stored.head_seq, stored.head_hash) == (
        entries[-1].seq,
        entries[-1].hash,
    )
    assert report.ok and report.entries == len(entries), report.breaks
    code, out = await _crisis_log_verify(settings, monkeypatch, capsys)
    assert code == 0 and f"OK: 1 incidents, {len(entries)} entries, every chain intact" in out


async def _crisis_log_verify(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    """``crisis log verify`` as an operator runs it: its exit code and what it printed.

    In a thread of its own, as the command runs its own event loop.
    """
    for key in list(os.environ):
        if key.startswith("CRISIS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("CRISIS_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("CRISIS_DATABASE_URL", settings.effective_database_url)
    capsys.readouterr()
    code = await asyncio.to_thread(main, ["log", "verify"])
    return code, capsys.readouterr().out
