"""The hash chain: a canonical JSON form of an entry and its SHA-256 link to the previous one.

Pure functions, no I/O, so the writer (``crisis.log.append``), ``crisis log verify`` and any
outside auditor compute the same bytes. Canonical form: UTF-8 JSON, keys sorted, no
insignificant white space, timestamps as ISO 8601 UTC with microseconds and a ``Z``.

An incident's chain starts at ``Head(0, GENESIS)``; the entry after a head has seq
``head.seq + 1`` and prev_hash ``head.hash``, and its digest is the next head's hash.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, NamedTuple

GENESIS = "0" * 64

#: The fields of an entry that the hash covers, in the order of the schema (order is irrelevant
#: to the digest because keys are sorted, but the list is the definition of what is protected).
HASHED_FIELDS = (
    "incident_id",
    "seq",
    "kind",
    "at",
    "actor",
    "text",
    "data",
    "exercise",
    "corrects",
    "prev_hash",
)

#: What an entry brings to its link: the hashed fields but those its head gives.
LINKED_FIELDS = tuple(name for name in HASHED_FIELDS if name not in ("seq", "prev_hash"))


class Head(NamedTuple):
    """Where an incident's chain stands: its last entry's seq and hash."""

    seq: int = 0
    hash: str = GENESIS


def format_time(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("naive datetime in the crisis log")
    return _format_utc(value.astimezone(UTC))


@lru_cache(maxsize=1024)
def _format_utc(value: datetime) -> str:
    """Cached: a batch's entries share one ``at``, formatted for the hash and the feed. Keyed
    by the UTC value only: two local times equal to each other (a ``fold``) may differ in UTC."""
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_json(value: Any) -> bytes:
    """Deterministic JSON bytes for hashing; datetimes become canonical UTC strings."""

    def default(obj: Any) -> Any:
        if isinstance(obj, datetime):
            return format_time(obj)
        raise TypeError(f"not serialisable in the crisis log: {type(obj).__name__}")

    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=default
    ).encode("utf-8")


def entry_digest(fields: Mapping[str, Any]) -> str:
    """SHA-256 over the canonical form of exactly the hashed fields."""
    return _digest({name: fields[name] for name in HASHED_FIELDS})


def next_head(head: Head, entry: Mapping[str, Any]) -> Head:
    """The head after ``entry`` (its ``LINKED_FIELDS``) is appended at ``head``.

    The new head's hash is the entry's digest with seq ``head.seq + 1`` and prev_hash
    ``head.hash``; a writer stores both on the entry, a verifier compares the stored hash.
    """
    seq = head.seq + 1
    payload = {  # HASHED_FIELDS spelled out: a dict display is the cheapest per entry
        "incident_id": entry["incident_id"],
        "seq": seq,
        "kind": entry["kind"],
        "at": entry["at"],
        "actor": entry["actor"],
        "text": entry["text"],
        "data": entry["data"],
        "exercise": entry["exercise"],
        "corrects": entry["corrects"],
        "prev_hash": head.hash,
    }
    return Head(seq, _digest(payload))


def _digest(payload: dict[str, Any]) -> str:
    if isinstance(payload["at"], datetime):
        payload["at"] = format_time(payload["at"])
    return hashlib.sha256(canonical_json(payload)).hexdigest()
