"""A media article as a raw ``media.article`` event (the media bridge and drills build it here)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from crisis.sources.catalogue import PREFIX

ARTICLE_TYPE: Final = PREFIX + "media.article"


def article_event(
    data: Mapping[str, Any],
    *,
    event_id: str,
    source: str,
    time: str,
    unit: str,
    exercise: str | None = None,
) -> dict[str, Any]:
    """The raw event of one article about ``unit``; fields whose value is None are left out."""
    raw: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": ARTICLE_TYPE,
        "time": time,
        "subject": unit,
        "unit": unit,
        "datacontenttype": "application/json",
        "data": {k: v for k, v in data.items() if v is not None},
    }
    if exercise:
        raw["exercise"] = exercise
    return raw
