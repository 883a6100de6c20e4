"""crisis.rules.standing_violations as a pure function over entry-like objects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from crisis.domain.rules import standing_violations

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


def _incident(**over: Any) -> SimpleNamespace:
    fields: dict[str, Any] = {
        "accountable_role": "leader",
        "level": "unit",
        "status": "open",
        "next_update_at": None,
    }
    fields.update(over)
    return SimpleNamespace(**fields)


def _entry(seq: int, kind: str, **data: Any) -> SimpleNamespace:
    return SimpleNamespace(seq=seq, kind=kind, data=data)


def _codes(found: list[Any]) -> set[tuple[str, int | None]]:
    return {(v.code, v.seq) for v in found}


def test_open_incident_violations() -> None:
    past = (NOW - timedelta(minutes=1)).isoformat()
    future = (NOW + timedelta(minutes=1)).isoformat()
    entries = [
        _entry(1, "incident_opened"),
        _entry(2, "task", title="Tilsyn", responsible_role="on_duty", deadline=past),
        _entry(3, "task", title="Uten rolle", responsible_role=" ", deadline=future),
        _entry(4, "task", title="Utført", responsible_role="leader", deadline=past),
        _entry(5, "task_update", task=4, status="done"),
        _entry(6, "cooperation_contact", actor_kind="nsm", actor_name=None, due=future),
        _entry(7, "cooperation_contact", actor_kind="police", actor_name="Politi", due=past),
    ]
    found = standing_violations(
        incident=_incident(accountable_role=None, next_update_at=past),
        entries=entries,
        now=NOW,
        required_level="region",
        criteria_met=("flagg: death",),
    )
    assert _codes(found) == {
        ("no_accountable_role", None),
        ("task_overdue", 2),
        ("task_without_role", 3),
        ("contact_unresolved", 6),
        ("contact_unacknowledged", 7),
        ("level_below_required", None),
        ("next_update_overdue", None),
    }
    principles = {v.code: v.principle for v in found}
    assert principles["task_overdue"] == "ansvarsprinsippet"
    assert principles["contact_unacknowledged"] == "samvirkeprinsippet"
    assert principles["level_below_required"] == "nærhetsprinsippet"
    assert all(v.message and v.message_en for v in found)


def test_acknowledged_contacts_closed_incidents_and_met_levels_are_quiet() -> None:
    past = (NOW - timedelta(minutes=1)).isoformat()
    entries = [
        _entry(1, "cooperation_contact", actor_kind="police", actor_name="Politi", due=past),
        _entry(2, "cooperation_contact", contact=1, status="acknowledged", by="operatør"),
    ]
    assert standing_violations(incident=_incident(), entries=entries, now=NOW) == []
    assert (
        standing_violations(
            incident=_incident(level="kdi"), entries=entries, now=NOW, required_level="region"
        )
        == []
    )
    overdue = [_entry(1, "task", title="T", responsible_role="on_duty", deadline=past)]
    assert standing_violations(incident=_incident(status="closed"), entries=overdue, now=NOW) == []
