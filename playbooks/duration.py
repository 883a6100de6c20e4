"""Offsets from an incident's start: ISO 8601 (``PT5M``) or short (``5m``, ``2h``, ``1h30m``)."""

from __future__ import annotations

import re
from datetime import timedelta

_ISO = re.compile(r"^P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+)S)?)?$")
_SHORT = re.compile(
    r"^(?=\d)(?:(?P<d>\d+)\s*d\s*)?(?:(?P<h>\d+)\s*h\s*)?"
    r"(?:(?P<m>\d+)\s*(?:min|m)\s*)?(?:(?P<s>\d+)\s*s)?$"
)

#: For the JSON Schema: either form, the short one also compound (``1h30m``).
PATTERN = (
    r"^(0|P(\d+D)?(T(\d+H)?(\d+M)?(\d+S)?)?"
    r"|(\d+\s*d\s*)?(\d+\s*h\s*)?(\d+\s*(min|m)\s*)?(\d+\s*s)?)$"
)


def parse_duration(value: str | int) -> timedelta:
    """``PT5M`` / ``5m`` / ``0`` → timedelta; ValueError naming the accepted forms otherwise."""
    text = str(value).strip()
    if text == "0":
        return timedelta(0)
    iso = _ISO.match(text)
    if iso and text not in ("P", "PT"):
        parts = {k: int(v or 0) for k, v in iso.groupdict().items()}
        return timedelta(days=parts["d"], hours=parts["h"], minutes=parts["m"], seconds=parts["s"])
    short = _SHORT.match(text)
    if short:
        parts = {k: int(v or 0) for k, v in short.groupdict().items()}
        return timedelta(days=parts["d"], hours=parts["h"], minutes=parts["m"], seconds=parts["s"])
    raise ValueError(
        f"{value!r} is not a duration (use ISO 8601 like PT5M or short like 5m, 2h, 1h30m, 1d)"
    )


def iso_duration(delta: timedelta) -> str:
    """The canonical ISO 8601 form written into log entries (``PT1H30M``)."""
    total = int(delta.total_seconds())
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    out = "P" + (f"{days}D" if days else "")
    time = (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
    time += f"{seconds}S" if seconds else ""
    if time:
        out += "T" + time
    return out if out != "P" else "PT0S"
