"""Reading the board's panels from the log alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from crisis.domain.rules import NOTIFIER_ACTOR
from crisis.log import projection
from crisis.log.models import LogEntry

T0 = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)


def _e(seq: int, kind: str, text: str = "", by: str = "rule:pb/r", **data: Any) -> LogEntry:
    return LogEntry(
        id=seq,
        incident_id="i",
        seq=seq,
        kind=kind,
        at=T0 + timedelta(minutes=seq),
        actor=by,
        text=text,
        data=data,
        prev_hash="",
        hash="",
    )


def test_tasks_take_the_latest_update() -> None:
    log = [
        _e(1, "task", title="A", responsible_role="leader", deadline="2026-11-22T03:00:00Z"),
        _e(2, "task", title="B", responsible_role="on_duty", deadline="om en time"),
        _e(3, "task_update", task=1, status="started"),
        _e(4, "task_update", task=1, status="done"),
        _e(5, "task_update", task=99, status="done"),
    ]
    a, b = projection.tasks(log)
    assert (a.title, a.status, a.done) == ("A", "done", True)
    assert a.deadline == datetime(2026, 11, 22, 3, tzinfo=UTC)
    assert (b.status, b.deadline, b.deadline_raw) == ("not_started", None, "om en time")


def test_contacts_one_row_per_actor_with_its_latest_status() -> None:
    log = [
        _e(
            1, "cooperation_contact", actor={"kind": "police", "name": "Agder pd", "status": "sent"}
        ),
        _e(2, "cooperation_contact", actor_kind="amk", actor_name="AMK Agder", status="sent"),
        _e(
            3,
            "cooperation_contact",
            actor={"kind": "police", "name": "Agder pd", "status": "acknowledged"},
        ),
    ]
    got = {(c.kind, c.name): c.status for c in projection.contacts(log)}
    assert got == {("police", "Agder pd"): "acknowledged", ("amk", "AMK Agder"): "sent"}


def test_notifications_per_group_latest_attempt_per_recipient() -> None:
    n = NOTIFIER_ACTOR
    log = [
        _e(1, "message", by=n, update_id="u1", group="staff", recipient="a", status="failed"),
        _e(
            2,
            "message",
            by=n,
            update_id="u1",
            group="staff",
            recipient="a",
            status="sent",
            attempt=2,
        ),
        _e(3, "message", by=n, update_id="u1", group="staff", recipient="b", status="timed_out"),
        _e(4, "message", by=n, update_id="u1", group="media", recipient="c", status="held"),
        _e(5, "message", text="a person's note, not a delivery"),
        # A receipt written by anyone but the notifiers says nothing about delivery.
        _e(
            6,
            "message",
            actor="user:x",
            update_id="u1",
            group="staff",
            recipient="b",
            status="acknowledged",
        ),
        _e(
            7,
            "message",
            actor="user:x",
            update_id="u9",
            group="families",
            recipient="d",
            status="sent",
        ),
    ]
    groups = {g.group: g for g in projection.notifications(log)}
    assert groups["staff"].counts == {"sent": 1, "timed_out": 1}
    assert groups["staff"].worst == "timed_out"
    assert projection.held_updates(list(groups.values())) == ["u1"]
    assert set(groups) == {"staff", "media"}


def test_checklist_items_are_read_as_playbooks_write_them_and_ticked_by_index() -> None:
    log = [
        _e(
            1,
            "task",
            title="Kontroller celle",
            responsible_role="on_duty",
            checklist=[{"item": "To betjenter", "done": False}, {"item": "Meld tilbake"}],
        ),
        _e(2, "task", title="Eldre form", responsible_role="leader", checklist=["Telling"]),
        _e(3, "task_update", task=1, item=1, done=True),
        _e(4, "task_update", task=1, item=9, done=True),  # no such item: nothing changes
        _e(5, "task_update", task=2, item=0, done=True),
    ]
    a, b = projection.tasks(log)
    assert a.checklist == [
        {"item": "To betjenter", "done": False},
        {"item": "Meld tilbake", "done": True},
    ]
    assert a.status == "not_started", "ticking an item is not a status change"
    assert b.checklist == [{"item": "Telling", "done": True}]


def test_a_contact_update_replaces_its_row() -> None:
    log = [
        _e(
            1,
            "cooperation_contact",
            actor_kind="fire",
            actor_name="Agder brann",
            status="to_contact",
        ),
        _e(2, "cooperation_contact", actor_kind="amk", actor_name="AMK Agder", status="to_contact"),
        _e(3, "cooperation_contact", by="user:op", contact=1, status="contacted"),
        _e(4, "cooperation_contact", by="user:op", contact=1, status="acknowledged"),
    ]
    got = [(c.seq, c.kind, c.name, c.status, c.by) for c in projection.contacts(log)]
    assert got == [
        (1, "fire", "Agder brann", "acknowledged", "user:op"),
        (2, "amk", "AMK Agder", "to_contact", "rule:pb/r"),
    ]


@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=2), st.sampled_from(["contacted", "acknowledged"])
        ),
        max_size=20,
    )
)
def test_any_sequence_of_contact_updates_keeps_one_row_per_contact_with_its_last_status(
    updates: list[tuple[int, str]],
) -> None:
    log = [
        _e(i + 1, "cooperation_contact", actor_kind=k, actor_name=f"{k} x", status="to_contact")
        for i, k in enumerate(("police", "fire", "amk"))
    ]
    last = {1: "to_contact", 2: "to_contact", 3: "to_contact"}
    for n, (which, status) in enumerate(updates):
        log.append(_e(4 + n, "cooperation_contact", contact=which + 1, status=status))
        last[which + 1] = status
    rows = projection.contacts(log)
    assert [(c.seq, c.status) for c in rows] == sorted(last.items())
