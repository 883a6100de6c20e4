from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from crisis.chain import GENESIS, canonical_json, entry_digest, format_time


def _fields(**over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "incident_id": "20261122-aaaa",
        "seq": 1,
        "kind": "observation",
        "at": datetime(2026, 11, 22, 2, 41, 7, 123456, tzinfo=UTC),
        "actor": "user:kari",
        "text": "Ingen pust registrert i celle A2-114",
        "data": {"cell": "A2-114", "seconds": 45},
        "exercise": None,
        "corrects": None,
        "prev_hash": GENESIS,
    }
    base.update(over)
    return base


def test_canonical_json_is_key_order_independent() -> None:
    assert canonical_json({"b": 1, "a": "æøå"}) == canonical_json({"a": "æøå", "b": 1})
    assert canonical_json({"a": "æ"}) == '{"a":"æ"}'.encode()


def test_same_instant_in_another_zone_hashes_the_same() -> None:
    oslo = timezone(timedelta(hours=1))
    at = datetime(2026, 11, 22, 3, 41, 7, 123456, tzinfo=oslo)
    assert entry_digest(_fields(at=at)) == entry_digest(_fields())


@pytest.mark.parametrize(
    "field,value",
    [
        ("seq", 2),
        ("kind", "decision"),
        ("actor", "user:ola"),
        ("text", "Ingen pust registrert i celle A2-115"),
        ("data", {"cell": "A2-114", "seconds": 46}),
        ("exercise", "ovelse-1"),
        ("corrects", 1),
        ("prev_hash", "1" * 64),
        ("at", datetime(2026, 11, 22, 2, 41, 7, 123457, tzinfo=UTC)),
    ],
)
def test_every_hashed_field_changes_the_digest(field: str, value: object) -> None:
    assert entry_digest(_fields(**{field: value})) != entry_digest(_fields())


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        format_time(datetime(2026, 1, 1))
