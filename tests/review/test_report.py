"""The report export: its sections, the integrity statement, masking, the audit and the PDF."""

from __future__ import annotations

import json
import re
import zlib
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select

from crisis import log
from crisis.domain.rules import NOTIFIER_ACTOR
from crisis.log import privacy
from crisis.log.append import append
from crisis.log.chain import Head, next_head
from crisis.log.models import DataAccess, Incident, LogEntry
from crisis.review import report as review_report
from crisis.review.metrics import incident_metrics
from crisis.store.db import make_sessionmaker
from tests.review.scenario import INMATE, T0, Viewer, build_incident

ADMIN = Viewer("anne", "admin")
COMMUNICATION = Viewer("kim", "communication")
MINISTRY = Viewer("jon", "ministry")


def pdf_text(pdf: bytes) -> bytes:
    """Every stream of the PDF inflated (zlib, the standard library): where its metadata is."""
    out = []
    for m in re.finditer(rb"stream\r?\n(.*?)\r?\nendstream", pdf, re.S):
        try:
            out.append(zlib.decompress(m.group(1)))
        except zlib.error:
            continue
    return b"".join(out)


def laid_out_text(html: str) -> str:
    """The text WeasyPrint lays out on the pages of ``html`` (its own rendering)."""
    from weasyprint import HTML

    def walk(box: Any) -> list[str]:
        found = [box.text] if getattr(box, "text", None) else []
        for child in getattr(box, "children", []) or []:
            found += walk(child)
        return found

    document = HTML(string=html, base_url=str(review_report.TEMPLATES)).render()
    return "".join(t for page in document.pages for t in walk(page._page_box))


async def _export(
    engine: AsyncEngine, viewer: Any, fmt: review_report.Format, **kw: Any
) -> tuple[review_report.Report, bytes]:
    async with make_sessionmaker(engine)() as session:
        result = await review_report.export_report(
            session, incident_id="inc-rep", viewer=viewer, fmt=fmt, **kw
        )
        await session.commit()
        return result


@pytest.fixture
async def incident(engine: AsyncEngine) -> Incident:
    async with make_sessionmaker(engine)() as session:
        await build_incident(session)
    async with make_sessionmaker(engine)() as session:
        row = await session.get(Incident, "inc-rep")
        assert row is not None
        return row


async def test_sections_and_integrity(engine: AsyncEngine, incident: Incident) -> None:
    report, body = await _export(engine, ADMIN, "json")
    doc = json.loads(body)
    summary = doc["summary"]
    assert summary["status"] == "closed" and summary["closing_reason"] == "Brannen er slukket"
    assert summary["final_situation"] == "Alle innsatte tilbake i cellene"
    assert summary["accountable_person"] == "Åse Ødegård"
    [decision] = [d for d in doc["decisions"] if d["kind"] == "decision"]
    assert decision["coercive"] and decision["legal_basis"] == "straffegjennomføringsloven § 37"
    assert decision["alternatives"] and decision["proportionality"]
    assert [t["status"] for t in doc["tasks"]] == ["done"]
    # Three receipts are one row of the activity log, counted per group, nobody named.
    folded = [a for a in doc["activity"] if a["kind"] == "delivery"]
    assert len(folded) == 1 and folded[0]["folded"] == 3
    assert "staff: sent 2" in folded[0]["activity"] and "kdi: failed 1" in folded[0]["activity"]
    assert "ola.vakt" not in json.dumps(doc["activity"])
    assert len(doc["activity"]) == incident.head_seq - 2
    groups = {g["group"]: g["totals"] for g in doc["notifications"]}
    assert groups == {"staff": {"sent": 2}, "kdi": {"failed": 1}}
    [sitrep] = doc["sitreps"]
    assert sitrep["status"] == "approved" and sitrep["situation"] == "Brannen er slukket"
    integrity = doc["integrity"]
    assert integrity["head_hash"] == incident.head_hash == report.integrity.head_hash
    assert integrity["entry_count"] == integrity["head_seq"] == incident.head_seq
    assert integrity["verified"] is True and integrity["problem"] is None
    assert integrity["check"] == f"crisis log verify --incident inc-rep --head {incident.head_hash}"
    assert doc["metrics"]["incident_id"] == "inc-rep" and doc["metrics"]["status"] == "closed"
    assert doc["metrics"]["tasks_with_deadline"] == len([t for t in doc["tasks"] if t["deadline"]])


async def test_a_broken_chain_is_stated(engine: AsyncEngine, incident: Incident) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE log_entries SET text = 'endret' WHERE incident_id = 'inc-rep' AND seq = 2")
        )
    report, body = await _export(engine, ADMIN, "html")
    assert not report.integrity.verified
    assert "entry seq 2" in (report.integrity.problem or "")
    assert "KJEDEN ER BRUTT" in body.decode()


@pytest.mark.parametrize("fmt", ["json", "html", "pdf"])
async def test_masked_without_need_to_know_and_audited(
    engine: AsyncEngine, incident: Incident, fmt: review_report.Format
) -> None:
    def shown(report: review_report.Report, body: bytes) -> str:
        if fmt != "pdf":
            return body.decode()
        assert body.startswith(b"%PDF") and INMATE.encode() not in pdf_text(body)
        return laid_out_text(review_report.render_html(report))

    masked = shown(*await _export(engine, COMMUNICATION, fmt))
    assert INMATE not in masked and privacy.MASK in masked
    assert INMATE in shown(*await _export(engine, ADMIN, fmt))
    async with make_sessionmaker(engine)() as session:
        rows = (await session.exec(select(DataAccess).order_by(DataAccess.id))).all()  # type: ignore[arg-type]
    assert [(r.actor, r.channel, r.inmate_refs) for r in rows] == [
        ("user:kim", f"report-{fmt}", []),
        ("user:anne", f"report-{fmt}", [INMATE]),
    ]
    assert rows[1].need == privacy.NEED["admin"]


async def test_pdf_carries_the_head_hash(engine: AsyncEngine, incident: Incident) -> None:
    report, pdf = await _export(engine, ADMIN, "pdf", lang="en")
    assert pdf.startswith(b"%PDF")
    assert incident.head_hash.encode() in pdf_text(pdf)  # the document's keywords
    laid_out = laid_out_text(review_report.render_html(report))
    assert incident.head_hash in laid_out and "Integrity statement" in laid_out
    assert INMATE in laid_out  # the admin has the need to know


async def test_norwegian_exercise_marking_and_oslo_times(engine: AsyncEngine) -> None:
    async with make_sessionmaker(engine)() as session:
        await build_incident(session, exercise="ovelse-2026-11-brann")
    _, body = await _export(engine, ADMIN, "html")
    html = body.decode()
    assert 'class="exercise-banner">ØVELSE – ovelse-2026-11-brann' in html
    assert "Integritetserklæring" in html and "Brann i avdeling A – Ærlig øvelse på Øya" in html
    # 01:41:07 UTC on 22 November is 02:41:07 in Oslo (winter time), UTC noted beside it.
    assert "22.11.2026 02:41:07 (01:41:07 UTC)" in html
    laid_out = laid_out_text(html)
    assert "ØVELSE" in laid_out and "Åse Ødegård" in laid_out


async def test_ministry_reads_approved_sitreps_only(engine: AsyncEngine) -> None:
    async with make_sessionmaker(engine)() as session:
        await build_incident(session, close=False)
        from crisis.log import sitreps
        from crisis.log.models import SitRepFields

        await sitreps.create_draft(
            session,
            incident_id="inc-rep",
            actor="user:kari",
            fields=SitRepFields(situation="kladd"),
        )
        await session.commit()
    admin, _ = await _export(engine, ADMIN, "json")
    ministry, _ = await _export(engine, MINISTRY, "json")
    assert [s["status"] for s in admin.sitreps] == ["approved", "draft"]
    assert [s["status"] for s in ministry.sitreps] == ["approved"]
    assert ministry.integrity.entry_count == admin.integrity.entry_count


def test_the_fetcher_refuses_the_network() -> None:
    fetcher = review_report._local_fetcher()
    for url in ("http://example.org/x.css", "https://example.org/x.png", "file:///etc/passwd"):
        with pytest.raises(ValueError):
            fetcher.fetch(url)
    inline = fetcher.fetch("data:text/plain,hei")
    assert inline.read() == b"hei"


# --- over any sequence of entries ----------------------------------------------------------

_STEP = st.one_of(
    st.tuples(st.just("observation"), st.sampled_from(["", "p-1", "p-2"])),
    st.tuples(st.just("receipt"), st.sampled_from(["staff", "kdi", "media"])),
)


def _chain(steps: list[tuple[str, str]]) -> tuple[Incident, list[LogEntry]]:
    incident = Incident(
        id="inc-p", type="fire_alarm", title="P", unit="ringerike", severity=3, opened_at=T0
    )
    head = Head()
    entries = []
    for n, (kind, arg) in enumerate(steps):
        receipt = kind == "receipt"
        fields = {
            "incident_id": "inc-p",
            "kind": "message" if receipt else "observation",
            "at": T0 + timedelta(seconds=n),
            "actor": NOTIFIER_ACTOR if receipt else "user:kari",
            "text": f"{kind} {n}",
            "data": (
                {"update_id": f"u-{n // 4}", "group": arg, "recipient": f"r-{n}", "status": "sent"}
                if receipt
                else ({"person_ref": arg} if arg else {})
            ),
            "exercise": None,
            "corrects": None,
        }
        new = next_head(head, fields)
        entries.append(
            LogEntry(id=n + 1, seq=new.seq, prev_hash=head.hash, hash=new.hash, **fields)
        )
        head = new
    return incident, entries


@given(st.lists(_STEP, min_size=1, max_size=40))
@hsettings(max_examples=60, deadline=None)
def test_every_entry_is_accounted_for_once(steps: list[tuple[str, str]]) -> None:
    incident, entries = _chain(steps)
    for viewer in (ADMIN, COMMUNICATION):
        report = review_report.build_report(
            incident=incident, entries=entries, viewer=viewer, now=T0, lang="nb"
        )
        rows = report.activity
        assert sum(r.get("folded", 1) for r in rows) == len(entries)
        assert [r["seq"] for r in rows] == sorted(r["seq"] for r in rows)
        receipts = sum(1 for kind, _ in steps if kind == "receipt")
        assert sum(sum(g["totals"].values()) for g in report.notifications) == receipts
        assert report.integrity.head_hash == entries[-1].hash
        assert report.integrity.entry_count == len(entries)
        refs = {arg for kind, arg in steps if kind == "observation" and arg}
        document = review_report.render_json(report).decode()
        if viewer is COMMUNICATION:
            assert not any(f'person_ref: {ref}"' in document for ref in refs)
            assert report.shown_refs == []
        else:
            assert sorted(set(report.shown_refs)) == sorted(refs)


async def test_metrics_and_lessons_sections(engine: AsyncEngine) -> None:
    """The metrics given are shown with their labels; the lessons learned recorded on the
    closed incident are read from its log, an overdue follow-up marked."""
    later = T0 + timedelta(days=30)
    async with make_sessionmaker(engine)() as session:
        await build_incident(session)
        finding = await append(
            session,
            incident_id="inc-rep",
            kind="finding",
            actor="user:kdi",
            text="Røykvarsler A2 virket ikke",
            data={"finding": "Røykvarsler A2 virket ikke", "category": "teknisk"},
            at=T0 + timedelta(days=2),
        )
        await append(
            session,
            incident_id="inc-rep",
            kind="follow_up",
            actor="user:kdi",
            text="Oppfølging: bytt røykvarslere",
            data={
                "title": "Bytt røykvarslere i A2",
                "owner": "driftsleder",
                "due": (T0 + timedelta(days=10)).date().isoformat(),
                "status": "open",
                "finding": finding.seq,
            },
            at=T0 + timedelta(days=2),
        )
        await session.commit()
        incident = await session.get(Incident, "inc-rep")
        assert incident is not None
        entries = await log.timeline(session, "inc-rep")
    metrics = incident_metrics(incident=incident, entries=entries, now=later).as_dict()
    metrics["owner_seconds"] = 3912.0
    report = review_report.build_report(
        incident=incident, entries=entries, viewer=ADMIN, now=later, lang="en", metrics=metrics
    )
    doc = report.as_dict()
    assert doc["metrics"] == metrics
    assert [f["finding"] for f in doc["lessons"]["findings"]] == ["Røykvarsler A2 virket ikke"]
    [follow_up] = doc["lessons"]["follow_ups"]
    assert follow_up["owner"] == "driftsleder" and follow_up["overdue"] is True
    html = review_report.render_html(report)
    assert "Response metrics" in html and "Lessons learned" in html
    assert (
        '<tr data-metric="owner_seconds"><th>→ owner and accountable</th><td>1 h 05 min</td>'
        in html
    )
    assert "Røykvarsler A2 virket ikke" in html
    assert f'<tr data-seq="{follow_up["seq"]}" class="overdue">' in html
    bare = review_report.render_html(
        review_report.build_report(incident=incident, entries=entries, viewer=ADMIN, now=T0)
    )
    assert 'id="metrics"' not in bare and 'class="overdue"' not in bare
