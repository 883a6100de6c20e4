"""The hash chain: a canonical JSON form of an entry and its SHA-256 link to the previous one.

Pure functions, so the writer, ``crisis log verify`` and any outside auditor compute the
same bytes. Canonical form: UTF-8 JSON, keys sorted, no insignificant white space,
timestamps as ISO 8601 UTC with microseconds and a ``Z``.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

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


def entry_digest(fields: dict[str, Any]) -> str:
    """SHA-256 over the canonical form of exactly the hashed fields."""
    payload = {name: fields[name] for name in HASHED_FIELDS}
    if isinstance(payload["at"], datetime):
        payload["at"] = format_time(payload["at"])
    return hashlib.sha256(canonical_json(payload)).hexdigest()
