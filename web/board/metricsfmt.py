"""Template filters for response metrics: durations in seconds and ISO instants in Oslo time."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from markupsafe import Markup

from crisis.clock import as_utc

OSLO = ZoneInfo("Europe/Oslo")


def duration(seconds: Any) -> str:
    """``130`` → "2 min 10 s"; ``3900`` → "1 h 05 min"; None → "–" (it never happened)."""
    if seconds is None:
        return "–"
    sign = "-" if seconds < 0 else ""
    total = round(abs(float(seconds)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{sign}{hours} h {minutes:02d} min"
    if minutes:
        return f"{sign}{minutes} min {secs:02d} s"
    return f"{sign}{secs} s"


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
