"""The review timeline's rows and filters, and the course chart."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any

from crisis.domain.rules import NOTIFIER_ACTOR
from crisis.domain.vocabulary import Role
from crisis.log import privacy
from crisis.log.models import LogEntry
from crisis.review import timeline
from crisis.review.chart import course_svg

T0 = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
SVG = "{http://www.w3.org/2000/svg}"


def _e(seq: int, kind: str, actor: str = "user:leder", text: str = "", **data: Any) -> LogEntry:
    return LogEntry(
        id=100 + seq,
        incident_id="i1",
        seq=seq,
        kind=kind,
        at=T0 + timedelta(minutes=seq),
        actor=actor,
        text=text or kind,
        data=data,
        prev_hash="0" * 64,
        hash="0" * 64,
    )


def _receipt(seq: int, update: str, group: str, who: str, status: str) -> LogEntry:
    return _e(
        seq,
        "message",
        NOTIFIER_ACTOR,
        f"Varsel {status}: {group}/{who}",
        update_id=update,
        group=group,
        recipient=who,
        message_id=seq,
        status=status,
    )


LOG = [
    _e(1, "incident_opened", "system:pipeline", unit="agder-froland"),
    _e(2, "source_event", "system:pipeline", source="/units/agder-froland/sensors/a", id="x"),
    _e(3, "observation", "user:leder", "Innsatt funnet", inmate_ref="K-1234"),
    _e(4, "message", "rule:p/notify", plan=[{"group": "staff"}, {"group": "media"}]),
    _receipt(5, "u1", "staff", "+4740000001", "queued"),
    _receipt(6, "u1", "staff", "+4740000002", "queued"),
    _receipt(7, "u1", "unions", "+4740000003", "queued"),
    _receipt(8, "u1", "staff", "+4740000001", "sent"),
    _receipt(9, "u1", "staff", "+4740000002", "failed"),
    _e(10, "escalation", "user:region", **{"from": "unit", "to": "region"}),
    _receipt(11, "u2", "media", "desk", "held"),
    _e(12, "decision", "user:region", "Ringerike overtar", new_owner="ringerike"),
]


def test_one_row_per_update_with_counts_per_status() -> None:
    rows = timeline.rows(entries=LOG)
    assert [r.kind for r in rows] == [
        "incident_opened",
        "source_event",
        "observation",
        "message",
        "message",
        "escalation",
        "message",
        "decision",
    ]
    u1 = rows[4]
    assert u1.folded and u1.update_id == "u1" and u1.seq == 5 and u1.last_seq == 9
    assert u1.counts == {"failed": 1, "queued": 1, "sent": 1} and u1.receipts == 5
    assert u1.groups == ("staff", "unions")
    assert {d.recipient: d.status for d in u1.deliveries} == {
        "+4740000001": "sent",
        "+4740000002": "failed",
        "+4740000003": "queued",
    }
    assert not rows[3].folded  # the plan is no receipt


def test_filters_narrow_the_rows() -> None:
    seqs = lambda **kw: [r.seq for r in timeline.rows(entries=LOG, **kw)]  # noqa: E731
    assert seqs(kinds=["escalation", "decision"]) == [10, 12]
    assert seqs(actor="user:region") == [10, 12]
    assert seqs(group="staff") == [4, 5]
    assert seqs(group="media") == [4, 11]
    assert seqs(unit="ringerike") == [12]
    assert seqs(unit="agder-froland") == [1, 2]
    assert 2 not in seqs(source_events=False) and len(seqs(source_events=False)) == 7
    assert seqs(kinds=["message"], group="unions") == [5]
    options = timeline.options(entries=LOG)
    assert options.kinds[:3] == ("incident_opened", "source_event", "observation")
    assert options.groups == ("media", "staff", "unions")
    assert options.units == ("agder-froland", "ringerike")
    assert "system:notifiers" in options.actors


class _Viewer:
    def __init__(self, role: str) -> None:
        self.name, self.role, self.unit, self.region = "x", role, None, None


def test_rows_show_what_the_viewer_may_read() -> None:
    shown = [privacy.entry_for_viewer(_Viewer(Role.COMMUNICATION), e)[0] for e in LOG]
    rows = timeline.rows(entries=shown)
    assert rows[2].refs == [("inmate_ref", privacy.MASK)]
    u1 = rows[4]
    # recipients masked, yet each still counted once by its stored identity
    assert u1.counts == {"failed": 1, "queued": 1, "sent": 1}
    assert {d.recipient for d in u1.deliveries} == {privacy.MASK}
    assert "+4740000001" not in repr([(r.text, r.data, r.deliveries) for r in rows])
    full = timeline.rows(
        entries=[privacy.entry_for_viewer(_Viewer(Role.OPERATOR), e)[0] for e in LOG]
    )
    assert full[2].refs == [("inmate_ref", "K-1234")]


def test_the_course_chart() -> None:
    svg = course_svg(entries=LOG, lang="nb")
    root = ET.fromstring(svg)  # noqa: S314 - our own output, well-formed
    assert root.get("role") == "img"
    assert root.find(f"{SVG}title").text == "Hendelsesforløp"  # type: ignore[union-attr]
    desc = root.find(f"{SVG}desc").text or ""  # type: ignore[union-attr]
    assert "2 kildehendelser" in desc and "1 eskaleringer" in desc and "7 meldinger" in desc
    lanes = {
        g.get("data-lane"): g.get("data-count") for g in root.iter(f"{SVG}g") if g.get("data-lane")
    }
    assert lanes == {"events": "2", "entries": "2", "escalations": "1", "messages": "7"}
    [esc] = [g for g in root.iter(f"{SVG}g") if g.get("class") == "escalation"]
    assert esc.get("data-level") == "region" and "→ region" in ET.tostring(esc, "unicode")
    assert re.search(r"03:0\d", svg)  # Oslo time on the axis (UTC+1 in November)
    english = course_svg(entries=LOG, lang="en")
    assert "Course of the incident" in english and "Escalated to region" in english


def test_the_chart_escapes_every_text() -> None:
    hostile = [_e(1, "escalation", **{"to": '<script>alert(1)</script>"&'})]
    svg = course_svg(entries=hostile, lang="en", id_prefix='x"><script>')
    assert "<script>" not in svg
    ET.fromstring(svg)  # noqa: S314 - our own output, still well-formed
    assert "&lt;script&gt;" in svg
    assert "No log entries" in course_svg(entries=[], lang="en")
