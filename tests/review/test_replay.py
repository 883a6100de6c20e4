"""The board at time T, replayed from the log: before and after an escalation, a task done,
a delivery failed; and, over random sequences written through the append service, the replay
at the last entry equals the live board and entries after T never change the state at T."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from crisis.domain.rules import NOTIFIER_ACTOR
from crisis.log import projection
from crisis.log.append import EntrySpec, append, append_bulk, open_incident
from crisis.log.models import Incident, IncidentCreate, LogEntry
from crisis.review.replay import entry_times, state_at
from crisis.store.db import make_engine, make_sessionmaker, migrate

T0 = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)


def _at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def _e(seq: int, minutes: float, kind: str, actor: str = "user:leder", **data: Any) -> LogEntry:
    return LogEntry(
        id=seq,
        incident_id="i1",
        seq=seq,
        kind=kind,
        at=_at(minutes),
        actor=actor,
        text=str(data.get("text", kind)),
        data=data,
        prev_hash="0" * 64,
        hash="0" * 64,
    )


INCIDENT = Incident(
    id="i1",
    type="personal_alarm",
    title="Personalarm",
    unit="ringerike",  # the row as it is now: changed since the opening
    severity=5,
    level="kdi",
    status="closed",
    opened_at=T0,
)

LOG = [
    _e(
        1,
        0,
        "incident_opened",
        unit="agder-froland",
        severity=3,
        accountable_role="on_duty",
        accountable_person="Vakthavende Froland",
    ),
    _e(2, 1, "task", title="Kontroller celle", responsible_role="on_duty", deadline=_at(10)),
    _e(
        3,
        2,
        "message",
        NOTIFIER_ACTOR,
        update_id="u1",
        group="staff",
        recipient="a",
        status="queued",
    ),
    _e(
        4,
        3,
        "message",
        NOTIFIER_ACTOR,
        update_id="u1",
        group="staff",
        recipient="a",
        status="failed",
        error="timeout",
    ),
    _e(5, 5, "escalation", **{"from": "unit", "to": "region", "reason": "alvorlig"}),
    _e(
        6,
        8,
        "decision",
        text="Regionen overtar",
        new_owner="ringerike",
        new_accountable_role="leader",
        new_accountable_person="Leder Ringerike",
        severity=5,
    ),
    _e(7, 12, "task_update", task=2, status="done"),
    _e(8, 15, "escalation", **{"from": "region", "to": "kdi", "reason": "nasjonalt"}),
]


def test_before_and_after_an_escalation() -> None:
    before = state_at(incident=INCIDENT, entries=LOG, at=_at(4))
    after = state_at(incident=INCIDENT, entries=LOG, at=_at(5))
    assert before.level == "unit" and after.level == "region"
    assert state_at(incident=INCIDENT, entries=LOG, at=_at(15)).level == "kdi"
    # the owner and severity of the opening, not the row's current ones
    assert (before.unit, before.severity, before.accountable_person) == (
        "agder-froland",
        3,
        "Vakthavende Froland",
    )
    later = state_at(incident=INCIDENT, entries=LOG, at=_at(8))
    assert (later.unit, later.severity, later.accountable_role) == ("ringerike", 5, "leader")
    assert before.seq == 4 and after.seq == 5 and after.entries == 5


def test_a_task_overdue_then_done() -> None:
    [task] = state_at(incident=INCIDENT, entries=LOG, at=_at(9)).tasks
    assert (task.status, task.overdue) == ("not_started", False)
    [task] = state_at(incident=INCIDENT, entries=LOG, at=_at(11)).tasks
    assert (task.status, task.overdue) == ("not_started", True)
    [task] = state_at(incident=INCIDENT, entries=LOG, at=_at(12)).tasks
    assert (task.status, task.overdue) == ("done", False)


def test_a_delivery_queued_then_failed() -> None:
    assert state_at(incident=INCIDENT, entries=LOG, at=_at(1)).groups == ()
    [queued] = state_at(incident=INCIDENT, entries=LOG, at=_at(2.5)).groups
    assert (queued.group, queued.counts, queued.worst) == ("staff", {"queued": 1}, "queued")
    [failed] = state_at(incident=INCIDENT, entries=LOG, at=_at(3)).groups
    assert (failed.counts, failed.worst) == ({"failed": 1}, "failed")


def test_before_the_first_entry_and_the_json_form() -> None:
    empty = state_at(incident=INCIDENT, entries=LOG, at=_at(-1))
    assert empty.seq == 0 and empty.tasks == () and empty.status == "open"
    data = state_at(incident=INCIDENT, entries=LOG, at=_at(3)).as_json()
    assert data["at"] == _at(3).isoformat() and data["groups"][0]["counts"] == {"failed": 1}
    assert data["tasks"][0]["deadline"] == _at(10).isoformat()
    assert entry_times(LOG) == [e.at for e in LOG]


# --- property: replay equals the live board, and the past does not change ----------------

ACTIONS = st.lists(
    st.sampled_from(
        [
            "escalate",
            "owner",
            "severity",
            "task",
            "done",
            "contact",
            "receipt_ok",
            "receipt_failed",
            "held",
            "promise",
            "close",
            "reopen",
        ]
    ),
    min_size=1,
    max_size=14,
)
_n = itertools.count()


@pytest.mark.slow
@hsettings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(actions=ACTIONS, cut=st.integers(min_value=0, max_value=20))
def test_replay_equals_the_live_board_and_later_entries_never_change_it(
    actions: list[str], cut: int, tmp_path: Path
) -> None:
    asyncio.run(_property(actions, cut, tmp_path / f"replay{next(_n)}.db"))


async def _write(session: Any, incident: Incident, action: str, at: datetime) -> None:
    levels = ["unit", "region", "kdi", "jd"]
    spec: EntrySpec | None = None
    if action == "escalate" and incident.level != "jd" and incident.status == "open":
        nxt = levels[levels.index(incident.level) + 1]
        spec = EntrySpec("escalation", "user:leder", "opp", {"from": incident.level, "to": nxt})
    elif action == "owner" and incident.status == "open":
        unit = "ringerike" if incident.unit != "ringerike" else "agder-froland"
        spec = EntrySpec(
            "decision", "user:leder", "ny eier", {"new_owner": unit, "new_accountable_role": "x"}
        )
    elif action == "severity" and incident.status == "open":
        spec = EntrySpec("decision", "user:leder", "alvor", {"severity": incident.severity % 5 + 1})
    elif action == "task" and incident.status == "open":
        deadline = (at + timedelta(seconds=90)).isoformat()
        spec = EntrySpec(
            "task", "user:leder", "", {"title": "T", "responsible_role": "x", "deadline": deadline}
        )
    elif action == "done" and incident.status == "open":
        tasks = [t for t in await _entries(session, incident.id) if t.kind == "task"]
        if tasks:
            spec = EntrySpec(
                "task_update", "user:leder", "", {"task": tasks[-1].seq, "status": "done"}
            )
    elif action == "contact" and incident.status == "open":
        spec = EntrySpec("cooperation_contact", "user:leder", "", {"kind": "politi", "name": "P"})
    elif action == "promise" and incident.status == "open":
        spec = EntrySpec(
            "observation",
            "user:leder",
            "",
            {"next_update_at": (at + timedelta(hours=1)).isoformat()},
        )
    elif action == "close" and incident.status == "open":
        spec = EntrySpec(
            "status_change",
            "user:leder",
            "",
            {"status": "closed", "reason": "r", "final_situation": "f"},
        )
    elif action == "reopen" and incident.status == "closed":
        spec = EntrySpec("status_change", "user:leder", "", {"status": "open", "reason": "r"})
    elif action.startswith("receipt") or action == "held":
        status = {"receipt_ok": "sent", "receipt_failed": "failed", "held": "held"}[action]
        data = {
            "update_id": f"u{at.minute % 3}",
            "group": "staff",
            "recipient": "r1",
            "status": status,
        }
        await append_bulk(
            session, entries=[(incident.id, EntrySpec("message", NOTIFIER_ACTOR, "", data))], at=at
        )
        return
    if spec is not None:
        await append(
            session,
            incident_id=incident.id,
            kind=spec.kind,
            actor=spec.actor,
            text=spec.text,
            data=spec.data,
            at=at,
        )


async def _entries(session: Any, incident_id: str) -> list[LogEntry]:
    from crisis import log

    return await log.timeline(session, incident_id)


async def _property(actions: list[str], cut: int, path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{path}")
    await migrate(engine)
    sessions = make_sessionmaker(engine)
    try:
        async with sessions() as session:
            incident, _ = await open_incident(
                session,
                incident=IncidentCreate(
                    type="personal_alarm",
                    title="Alarm",
                    unit="agder-froland",
                    severity=3,
                    accountable_role="on_duty",
                ),
                actor="user:leder",
                at=T0,
            )
            for k, action in enumerate(actions, start=1):
                await _write(session, incident, action, T0 + timedelta(minutes=k))
                await session.commit()
                await session.refresh(incident)
            entries = await _entries(session, incident.id)
            live = await session.get(Incident, incident.id)
            assert live is not None
        last = entries[-1].at
        state = state_at(incident=live, entries=entries, at=last)
        # the live board: the incident row and the panels' projections of the whole log
        assert (state.unit, state.level, state.severity, state.status) == (
            live.unit,
            live.level,
            live.severity,
            live.status,
        )
        assert (state.accountable_role, state.accountable_person) == (
            live.accountable_role,
            live.accountable_person,
        )
        assert state.next_update_at == live.next_update_at
        tasks = projection.tasks(entries)
        assert [(t.seq, t.status) for t in state.tasks] == [(t.seq, t.status) for t in tasks]
        groups = projection.notifications(entries)
        assert [(g.update_id, g.counts, g.worst) for g in state.groups] == [
            (g.update_id, g.counts, g.worst) for g in groups
        ]
        assert [(c.kind, c.name, c.status) for c in state.contacts] == [
            (c.kind, c.name, c.status) for c in projection.contacts(entries)
        ]
        assert list(state.held) == projection.held_updates(groups)
        # entries after T never change the state at T
        at = entries[min(cut, len(entries) - 1)].at
        prefix = [e for e in entries if e.at <= at]
        assert state_at(incident=live, entries=prefix, at=at) == state_at(
            incident=live, entries=entries, at=at
        )
    finally:
        await engine.dispose()
