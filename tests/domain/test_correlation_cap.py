"""The CAP warning rules on their own (MET's profile): what an Update corrects, what ends a
unit's part of a warning, and what is left to the incident's owner."""

from __future__ import annotations

from typing import Any

from crisis.domain.correlation import AddEntry, Event, OpenIncident
from crisis.domain.vocabulary import EntryKind
from tests.domain.test_correlation import T0, World, ev

REF = "noreply@met.no,{},2026-11-22T02:00:00+00:00"
LEVELS = {
    "yellow": ("2; yellow; Moderate", "Moderate", "gult"),
    "red": ("4; red; Extreme", "Extreme", "rødt"),
}


def warning(t: float, msg_type: str, identifier: str, level: str = "yellow", **kw: Any) -> Event:
    awareness, severity, word = LEVELS[level]
    data: dict[str, Any] = {
        "identifier": identifier,
        "sender": "noreply@met.no",
        "sent": "2026-11-22T02:00:00+00:00",
        "status": "Actual",
        "msg_type": msg_type,
        "event": "wind",
        "headline": f"Kraftige vindkast, {word} nivå, Indre Agder",
        "awareness_level": awareness,
        "severity": severity,
        "area_desc": "Indre Agder",
        "response_types": ["Monitor"],
        "in_area": True,
    }
    data.update(kw)
    return ev("warning.cap", t, source="/cap/noreply@met.no", **data)


def update(t: float, identifier: str, of: str, **kw: Any) -> Event:
    return warning(t, "Update", identifier, references=[REF.format(of)], **kw)


def test_update_to_red_corrects_severity_and_title_of_the_same_incident() -> None:
    w = World()
    (opened,) = w.feed(warning(T0, "Alert", "met-1"))
    assert isinstance(opened, OpenIncident) and opened.severity == 2
    out = w.feed(update(T0 + 60, "met-2", "met-1", level="red"))
    source, correction = out
    assert source.kind == EntryKind.SOURCE_EVENT.value
    assert isinstance(correction, AddEntry) and correction.kind == EntryKind.CORRECTION.value
    assert correction.corrects == 1 and correction.incident_id == opened.incident_id
    assert correction.data["severity"] == 4 and "rødt nivå" in correction.data["title"]
    assert "area" not in correction.data  # unchanged: not corrected
    assert correction.data["previous"] == {"severity": 2, "title": opened.title}
    assert correction.data["reason"] == "CAP Update met-2"
    # The same state again corrects nothing; a new area does.
    (again,) = w.feed(update(T0 + 70, "met-3", "met-2", level="red"))
    assert again.kind == EntryKind.SOURCE_EVENT.value
    moved = w.feed(update(T0 + 80, "met-4", "met-3", level="red", area_desc="Agder"))
    assert moved[1].data["area"] == "Agder" and "severity" not in moved[1].data
    assert len(w.opened()) == 1


def test_all_clear_closes_with_a_reason_and_a_later_end_opens_nothing() -> None:
    w = World()
    (opened,) = w.feed(warning(T0, "Alert", "met-1"))
    out = w.feed(update(T0 + 60, "met-2", "met-1", response_types=["AllClear"]))
    closing = out[-1]
    assert closing.kind == EntryKind.STATUS_CHANGE.value and closing.data["status"] == "closed"
    assert "AllClear" in closing.data["reason"] and closing.data["final_situation"]
    assert w.incidents[opened.incident_id].status == "closed"
    # The unit dropped later, or another all-clear: nothing opens again.
    assert w.feed(update(T0 + 70, "met-3", "met-2", in_area=False)) == []
    assert w.feed(update(T0 + 80, "met-4", "met-1", response_types=["AllClear"])) == []
    assert len(w.opened()) == 1


def test_a_dropped_unit_closes_its_open_incident() -> None:
    w = World()
    (opened,) = w.feed(warning(T0, "Alert", "met-1"))
    *_, closing = w.feed(update(T0 + 60, "met-2", "met-1", in_area=False))
    assert closing.kind == EntryKind.STATUS_CHANGE.value
    assert "ikke lenger i varselområdet" in closing.data["reason"]
    assert w.incidents[opened.incident_id].status == "closed"


def test_an_escalated_incident_is_left_open_for_its_owner() -> None:
    w = World()
    (opened,) = w.feed(warning(T0, "Alert", "met-1"))
    w.incidents[opened.incident_id].level = "region"
    *_, note = w.feed(update(T0 + 60, "met-2", "met-1", response_types=["AllClear"]))
    assert note.kind == EntryKind.OBSERVATION.value and note.data["warning_ended"] is True
    assert "region" in note.text and w.incidents[opened.incident_id].status == "open"


def test_expires_ends_the_warning_by_the_clock_unless_an_update_superseded_it() -> None:
    w = World()
    expires = "2026-11-22T06:00:00+00:00"  # T0 is far later: an epoch second, not a date
    (opened,) = w.feed(warning(T0, "Alert", "met-1", expires=expires))
    key = "cap:agder-froland||met-1"
    due = w.state[key]["due"]
    assert due is not None
    assert w.correlator.due(key, w.state[key], w.incidents, due - 1) == []
    (closing,) = w.correlator.due(key, w.state[key], w.incidents, due + 1)
    assert closing.kind == EntryKind.STATUS_CHANGE.value and "expires" in closing.data["reason"]
    assert w.incidents[opened.incident_id].status == "closed"
    assert w.correlator.due(key, w.state[key], w.incidents, due + 2) == []  # once

    # An Update moves the expiry: the first alert's time no longer closes anything.
    w2 = World()
    w2.feed(warning(T0, "Alert", "met-1", expires=expires))
    w2.feed(update(T0 + 60, "met-2", "met-1", expires="2026-11-22T09:00:00+00:00"))
    assert w2.state[key]["due"] is None
    assert w2.correlator.due(key, w2.state[key], w2.incidents, due + 1) == []
    later = w2.state["cap:agder-froland||met-2"]
    assert later["due"] == due + 3 * 3600


def test_cancel_still_closes_and_an_unknown_end_opens_nothing() -> None:
    w = World()
    (opened,) = w.feed(warning(T0, "Alert", "met-1"))
    cancel = w.feed(warning(T0 + 5, "Cancel", "met-2", references=[REF.format("met-1")]))
    assert [a.kind for a in cancel] == [EntryKind.SOURCE_EVENT.value, "status_change"]
    assert w.incidents[opened.incident_id].status == "closed"
    assert w.feed(update(T0, "met-9", "nowhere", response_types=["AllClear"])) == []
    assert w.feed(update(T0, "met-10", "nowhere", in_area=False)) == []
