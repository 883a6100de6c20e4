"""Template filters for response metrics: durations in seconds and ISO instants in Oslo time."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from markupsafe import Markup

from crisis.clock import as_utc
from crisis.review.metrics import format_duration

OSLO = ZoneInfo("Europe/Oslo")


duration = format_duration


def oslo_iso(value: Any, fmt: str = "%d.%m.%Y %H:%M:%S") -> Markup:
    """An ISO 8601 UTC string (``IncidentMetrics.as_dict``) as a <time> in Oslo time."""
    if not value:
        return Markup("–")
    utc = as_utc(str(value))
    return Markup('<time datetime="{iso}" title="UTC {u}">{local}</time>').format(
        iso=str(value),
        u=utc.strftime("%Y-%m-%d %H:%M:%S"),
        local=utc.astimezone(OSLO).strftime(fmt),
    )


def share(value: Any) -> str:
    return "–" if value is None else f"{round(float(value) * 100)} %"


FILTERS = {"duration": duration, "oslo_iso": oslo_iso, "share": share}
