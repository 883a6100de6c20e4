"""The incident's course as an inline SVG drawn on the server: no script, no library.

Four lanes over time — source events, log entries, escalations, messages — with the
escalations also marked across the whole chart and labelled with the level reached. Marks
are binned per few pixels (a title tells the count), so a long log stays a small drawing.
Every text is escaped; the drawing holds times, kinds and levels only, no personal data.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from crisis.clock import as_utc
from crisis.domain.vocabulary import EntryKind
from crisis.log.models import LogEntry
from crisis.log.privacy import Shown

OSLO = ZoneInfo("Europe/Oslo")
WIDTH, LANE, TOP, LEFT, RIGHT, AXIS = 960, 34, 34, 130, 20, 34
BIN_PX = 4

LANES = ("events", "entries", "escalations", "messages")
WORDS: dict[str, tuple[str, str]] = {
    "title": ("Hendelsesforløp", "Course of the incident"),
    "events": ("Kildehendelser", "Source events"),
    "entries": ("Loggføringer", "Log entries"),
    "escalations": ("Eskaleringer", "Escalations"),
    "messages": ("Meldinger", "Messages"),
    "between": ("mellom", "between"),
    "and": ("og", "and"),
    "none": ("Ingen loggføringer", "No log entries"),
    "escalated": ("Eskalert til", "Escalated to"),
    "time": ("Tid (Oslo)", "Time (Oslo)"),
}
LEVEL_WORDS: dict[str, tuple[str, str]] = {
    "unit": ("enhet", "unit"),
    "region": ("region", "region"),
    "kdi": ("KDI", "KDI"),
    "jd": ("JD", "JD"),
}


def lane_of(kind: str) -> str:
    if kind in (EntryKind.SOURCE_EVENT, EntryKind.INCIDENT_OPENED):
        return "events"
    if kind == EntryKind.ESCALATION:
        return "escalations"
    if kind == EntryKind.MESSAGE:
        return "messages"
    return "entries"


def _entry(item: LogEntry | Shown) -> LogEntry:
    return item.entry if isinstance(item, Shown) else item


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def course_svg(
    *, entries: Sequence[LogEntry | Shown], lang: str = "nb", id_prefix: str = "course"
) -> str:
    """The chart as an ``<svg>`` element (a string, safe to embed as it is)."""
    i = 1 if lang == "en" else 0

    def w(key: str) -> str:
        return WORDS[key][i]

    rows = [_entry(x) for x in entries]
    height = TOP + LANE * len(LANES) + AXIS
    pid = _e(id_prefix)
    if not rows:
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" class="course" role="img" '
            f'viewBox="0 0 {WIDTH} 60" aria-labelledby="{pid}-title">'
            f'<title id="{pid}-title">{_e(w("title"))}: {_e(w("none"))}</title>'
            f'<text x="{LEFT}" y="34">{_e(w("none"))}</text></svg>'
        )
    times = [as_utc(e.at) for e in rows]
    t0, t1 = min(times), max(times)
    span = max((t1 - t0).total_seconds(), 60.0)
    plot = WIDTH - LEFT - RIGHT

    def x(t: datetime) -> float:
        return LEFT + plot * (as_utc(t) - t0).total_seconds() / span

    counts = {lane: 0 for lane in LANES}
    bins: dict[tuple[str, int], list[datetime]] = {}
    escalations: list[tuple[datetime, str]] = []
    for e, t in zip(rows, times, strict=True):
        lane = lane_of(e.kind)
        counts[lane] += 1
        bins.setdefault((lane, int((x(t) - LEFT) // BIN_PX)), []).append(t)
        if lane == "escalations":
            escalations.append((t, str((e.data or {}).get("to", ""))))

    fmt = "%d.%m %H:%M" if span > 86400 else "%H:%M:%S" if span <= 600 else "%H:%M"

    def local(t: datetime) -> str:
        return t.astimezone(OSLO).strftime(fmt)

    summary = ", ".join(f"{counts[lane]} {w(lane).lower()}" for lane in LANES)
    desc = f"{summary} {w('between')} {local(t0)} {w('and')} {local(t1)}"
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="course" role="img" '
        f'viewBox="0 0 {WIDTH} {height}" aria-labelledby="{pid}-title {pid}-desc">',
        f'<title id="{pid}-title">{_e(w("title"))}</title>',
        f'<desc id="{pid}-desc">{_e(desc)}</desc>',
    ]
    for n, lane in enumerate(LANES):
        y = TOP + LANE * n
        out.append(
            f'<g class="lane lane-{lane}" data-lane="{lane}" data-count="{counts[lane]}">'
            f'<rect class="lane-bg" x="{LEFT}" y="{y}" width="{plot}" height="{LANE - 4}"/>'
            f'<text class="lane-label" x="{LEFT - 8}" y="{y + LANE / 2}" '
            f'text-anchor="end">{_e(w(lane))} ({counts[lane]})</text>'
        )
        for (lane_, col), ts in sorted(bins.items()):
            if lane_ != lane:
                continue
            label = f"{len(ts)} · {local(min(ts))}" + (
                f"–{local(max(ts))}" if local(max(ts)) != local(min(ts)) else ""
            )
            out.append(
                f'<rect class="mark" x="{LEFT + col * BIN_PX:.1f}" y="{y + 3}" '
                f'width="{BIN_PX - 1}" height="{LANE - 10}"><title>{_e(label)}</title></rect>'
            )
        out.append("</g>")
    bottom = TOP + LANE * len(LANES)
    for t, level in escalations:
        xe = x(t)
        word = LEVEL_WORDS.get(level, (level, level))[i]
        label = f"{w('escalated')} {word} {local(t)}"
        out.append(
            f'<g class="escalation" data-level="{_e(level)}">'
            f'<line x1="{xe:.1f}" y1="{TOP - 6}" x2="{xe:.1f}" y2="{bottom}"/>'
            f'<path d="M{xe - 5:.1f},{TOP - 16} L{xe + 5:.1f},{TOP - 16} L{xe:.1f},{TOP - 6} Z"/>'
            f'<text x="{xe + 7:.1f}" y="{TOP - 8}">{_e("→ " + word)}</text>'
            f"<title>{_e(label)}</title></g>"
        )
    out.append(
        f'<g class="axis"><line x1="{LEFT}" y1="{bottom}" x2="{WIDTH - RIGHT}" y2="{bottom}"/>'
    )
    ticks = 6
    for k in range(ticks):
        t = t0 + timedelta(seconds=span * k / (ticks - 1))
        xt = LEFT + plot * k / (ticks - 1)
        anchor = "start" if k == 0 else "end" if k == ticks - 1 else "middle"
        out.append(
            f'<line x1="{xt:.1f}" y1="{bottom}" x2="{xt:.1f}" y2="{bottom + 4}"/>'
            f'<text x="{xt:.1f}" y="{bottom + 16}" text-anchor="{anchor}">{_e(local(t))}</text>'
        )
    out.append(
        f'<text class="axis-label" x="{LEFT - 8}" y="{bottom + 16}" '
        f'text-anchor="end">{_e(w("time"))}</text></g></svg>'
    )
    return "".join(out)
