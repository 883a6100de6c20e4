from __future__ import annotations

import ast
import copy
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from crisis.log import chain
from crisis.log.append import EntrySpec, chain_rows
from crisis.log.chain import (
    GENESIS,
    LINKED_FIELDS,
    Head,
    canonical_json,
    entry_digest,
    format_time,
    next_head,
)


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


def _linked(**over: object) -> dict[str, object]:
    fields = _fields(**over)
    return {name: fields[name] for name in LINKED_FIELDS}


def test_next_head_is_the_digest_of_the_entry_after_the_head() -> None:
    head = Head(4, "a" * 64)
    entry = _linked()
    before = copy.deepcopy(entry)
    new = next_head(head, entry)
    assert new == next_head(head, entry)  # deterministic
    assert entry == before and head == Head(4, "a" * 64)  # nothing changed in place
    assert new == Head(5, entry_digest(_fields(seq=5, prev_hash="a" * 64)))
    assert next_head(Head(), entry).hash == entry_digest(_fields())


def test_chain_rows_links_entries_without_touching_its_arguments() -> None:
    at = datetime(2026, 11, 22, 2, 41, 7, tzinfo=UTC)
    heads = {"a": Head(), "b": Head(7, "b" * 64)}
    exercise = {"a": None, "b": "ovelse-1"}
    entries = [
        ("a", EntrySpec("observation", "user:kari", "én", {"n": 1})),
        ("b", EntrySpec("observation", "user:kari", "to", {"n": 2})),
        ("a", EntrySpec("correction", "user:ola", "tre", {"n": 3}, corrects=1)),
    ]
    before = copy.deepcopy((heads, exercise, entries))
    rows, moved = chain_rows(heads=heads, exercise=exercise, entries=entries, at=at)
    again = chain_rows(heads=heads, exercise=exercise, entries=entries, at=at)
    assert (heads, exercise, entries) == before and (rows, moved) == again
    assert [(r["incident_id"], r["seq"]) for r in rows] == [("a", 1), ("b", 8), ("a", 2)]
    assert rows[0]["prev_hash"] == GENESIS and rows[2]["prev_hash"] == rows[0]["hash"]
    assert rows[1]["prev_hash"] == "b" * 64 and rows[1]["exercise"] == "ovelse-1"
    for row in rows:
        assert row["hash"] == entry_digest(row)
    assert moved == {"a": Head(2, rows[2]["hash"]), "b": Head(8, rows[1]["hash"])}


def test_the_chain_builder_does_no_io() -> None:
    tree = ast.parse(Path(chain.__file__).read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= {"__future__", "collections", "dataclasses", "datetime", "functools"} | {
        "hashlib",
        "json",
        "typing",
    }


#: What only the append service may do, and where it may appear besides (the chain builder
#: defines the digest; verification recomputes links without writing).
_ONE_WRITER = {
    # The storage adapters supply the lock statements; only the append service calls them.
    "pg_advisory": {"crisis/store/postgres.py"},
    "SET head_seq = head_seq": {"crisis/store/sqlite.py"},
    ".take_locks(": {"crisis/log/append.py"},
    "entry_digest(": {"crisis/log/chain.py"},
    "next_head(": {"crisis/log/chain.py", "crisis/log/append.py", "crisis/log/verify.py"},
    "def lock_key": {"crisis/log/append.py"},
    "def json_safe": {"crisis/log/append.py"},
}


@pytest.mark.parametrize("needle", sorted(_ONE_WRITER))
def test_only_the_append_service_chains_and_locks(needle: str) -> None:
    root = Path(__file__).resolve().parents[2]
    found = {
        str(path.relative_to(root))
        for package in ("crisis", "streams", "playbooks", "notifiers", "web")
        for path in (root / package).rglob("*.py")
        if needle in path.read_text()
    }
    assert found <= _ONE_WRITER[needle], found
