"""Lessons learned as a projection of the log, and the rules of their entries: what a
finding, a follow-up and its update need, and that on a closed incident only they (besides
the reopening and delivery receipts) are taken."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from hypothesis import given
from hypothesis import strategies as st

from crisis.domain import rules
from crisis.domain.vocabulary import LESSON_KINDS, EntryKind
from crisis.review.lessons import due_instant, lessons_of

T0 = datetime(2026, 3, 10, 12, tzinfo=UTC)


class E(NamedTuple):
    seq: int
    kind: str
    at: datetime
    actor: str
    text: str
    data: dict[str, Any]


def log(*items: tuple[str, dict[str, Any]]) -> list[E]:
    return [
        E(n, kind, T0 + timedelta(minutes=n), "user:leder", "", data)
        for n, (kind, data) in enumerate(items, start=1)
    ]


FOLLOW_UP = {"title": "Oppdater varslingslisten", "owner": "leder", "due": "2026-03-20"}


def test_follow_ups_take_their_latest_update_and_overdue_follows_the_oslo_day() -> None:
    entries = log(
        ("incident_opened", {}),
        ("finding", {"finding": "Varslingslisten var utdatert", "category": "improve"}),
        ("follow_up", {**FOLLOW_UP, "status": "open", "finding": 2}),
        ("follow_up", {"title": "Øv på evakuering", "owner": "HMS", "due": "2026-03-15"}),
        ("observation", {"follow_up": 3, "status": "done"}),  # not an update: ignored
        ("follow_up_update", {"follow_up": 3, "status": "in_progress"}),
        ("follow_up_update", {"follow_up": 3, "owner": "nestleder", "due": "2026-04-01"}),
        ("follow_up_update", {"follow_up": 4, "status": "dropped"}),
        ("follow_up_update", {"follow_up": 99, "status": "done"}),  # unknown: ignored
    )
    lessons = lessons_of(entries)
    assert [(f.seq, f.finding, f.category) for f in lessons.findings] == [
        (2, "Varslingslisten var utdatert", "improve")
    ]
    first, second = lessons.follow_ups
    assert (first.status, first.owner, first.due, first.finding) == (
        "in_progress",
        "nestleder",
        "2026-04-01",
        2,
    )
    assert first.updates == [6, 7] and first.updated_at == T0 + timedelta(minutes=7)
    assert second.status == "dropped"
    # due 1 April: the whole Oslo day (UTC+2 in summer time) counts
    assert not first.overdue(datetime(2026, 4, 1, 21, 59, tzinfo=UTC))
    assert first.overdue(datetime(2026, 4, 1, 22, 0, tzinfo=UTC))
    assert not second.overdue(datetime(2027, 1, 1, tzinfo=UTC)), "dropped is never overdue"
    late = datetime(2026, 5, 1, tzinfo=UTC)
    assert [f.seq for f in lessons.overdue(late)] == [3]
    as_dict = lessons.as_dict(late)
    assert as_dict["overdue"] == [3]
    assert as_dict["follow_ups"][0]["overdue"] is True
    assert as_dict["findings"][0]["at"] == (T0 + timedelta(minutes=2)).isoformat()
    assert "overdue" not in lessons.as_dict()


def test_due_dates() -> None:
    assert due_instant("2026-01-15") is not None
    assert due_instant("2026-01-15T08:00") == datetime(2026, 1, 15, 7, tzinfo=UTC)
    assert due_instant("2026-01-15T08:00+00:00") == datetime(2026, 1, 15, 8, tzinfo=UTC)
    assert due_instant("neste uke") is None


def fields(violations: list[rules.Violation]) -> list[str]:
    return [v.field for v in violations]


def test_the_rules_of_lesson_entries() -> None:
    assert fields(rules.check_finding({"finding": " "})) == ["finding"]
    assert rules.check_finding({"finding": "Funn"}) == []
    assert rules.check_follow_up(FOLLOW_UP, set()) == []
    missing = rules.check_follow_up({"status": "later"}, set())
    assert fields(missing) == ["title", "owner", "due", "status"]
    assert next(v for v in missing if v.field == "owner").principle == "ansvarsprinsippet"
    assert fields(rules.check_follow_up({**FOLLOW_UP, "due": "snart"}, set())) == ["due"]
    assert fields(rules.check_follow_up({**FOLLOW_UP, "finding": 4}, {2})) == ["finding"]
    assert rules.check_follow_up({**FOLLOW_UP, "finding": 2, "status": "done"}, {2}) == []

    assert rules.check_follow_up_update({"follow_up": 3, "status": "done"}, {3}) == []
    assert fields(rules.check_follow_up_update({"follow_up": 4, "status": "done"}, {3})) == [
        "follow_up"
    ]
    assert fields(rules.check_follow_up_update({"follow_up": True, "due": "x"}, {1})) == [
        "follow_up",
        "due",
    ]
    assert fields(rules.check_follow_up_update({"follow_up": 3}, {3})) == ["status"]
    assert fields(rules.check_follow_up_update({"follow_up": 3, "owner": ""}, {3})) == ["owner"]
    assert fields(rules.check_follow_up_update({"follow_up": 3, "status": "x"}, {3})) == ["status"]


DATA = st.dictionaries(
    st.sampled_from(["status", "text", "delivered", "reason", "follow_up", "finding"]),
    st.sampled_from(["open", "closed", "done", "delivered", 1]),
    max_size=3,
)
ACTORS = st.sampled_from(["user:leder", "rule:brann/varsle", "system:notifiers", "system:x"])


@given(kind=st.sampled_from(list(EntryKind)), actor=ACTORS, data=DATA)
def test_a_closed_incident_takes_lessons_and_refuses_every_other_kind(
    kind: EntryKind, actor: str, data: dict[str, Any]
) -> None:
    refused = rules.check_closed(status="closed", kind=kind.value, actor=actor, data=data)
    reopening = kind == EntryKind.STATUS_CHANGE and data.get("status") == "open"
    receipt = rules.is_delivery_receipt(kind.value, actor, data)
    assert (not refused) == (kind in LESSON_KINDS or reopening or receipt)
    assert not rules.check_closed(status="open", kind=kind.value, actor=actor, data=data)


def test_the_partial_index_covers_every_lesson_kind() -> None:
    """The index the cross-incident list reads names exactly the lesson kinds."""
    import re

    from crisis.log.models import LESSON_WHERE

    assert set(re.findall(r"'(\w+)'", LESSON_WHERE)) == {k.value for k in LESSON_KINDS}
