"""The report export: one incident as a document that proves its own integrity.

:func:`build_report` assembles, from the incident and its whole chain, what a reviewer
reads afterwards: a summary, the timeline as an ICS-214-style activity log (delivery
receipts folded into one row per update), decisions with their legal basis, tasks,
notifications per group, situation reports, and an integrity statement (the chain's head
hash, its entry count and the result of verifying the chain at export time). Personal
references are masked by the viewer's need-to-know (:mod:`crisis.log.privacy`).

Renderers: :func:`render_json`, :func:`render_html` (Jinja2, print CSS, Norwegian or
English, Europe/Oslo times with UTC noted, ØVELSE on an exercise) and :func:`render_pdf`
(WeasyPrint over the same HTML, fetching nothing from the network).
:func:`export_report` reads, verifies, builds, renders and records the export in the
access audit; the web view and ``crisis report`` both call it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlmodel.ext.asyncio.session import AsyncSession

from crisis import log
from crisis.clock import as_utc, utcnow
from crisis.domain import rules
from crisis.domain.rules import NOTIFIER_ACTOR
from crisis.domain.vocabulary import LESSON_KINDS, EntryKind, Person, Status
from crisis.log import privacy, projection
from crisis.log.chain import GENESIS
from crisis.log.models import DataAccess, Incident, LogEntry
from crisis.log.verify import verify_log
from crisis.review.lessons import lessons_of
from crisis.review.metrics import DURATIONS, format_duration, incident_metrics
from crisis.review.metrics import LABELS as METRIC_LABELS

OSLO: Final = ZoneInfo("Europe/Oslo")
FORMATS: Final = ("html", "pdf", "json")
LANGS: Final = ("nb", "en")
Format = Literal["html", "pdf", "json"]
Lang = Literal["nb", "en"]
TEMPLATES: Final = Path(__file__).parent / "templates"
MEDIA_TYPES: Final[Mapping[str, str]] = {
    "html": "text/html; charset=utf-8",
    "pdf": "application/pdf",
    "json": "application/json",
}
#: The access audit's channel of an export: ``report-pdf`` and so on.
CHANNEL_PREFIX: Final = "report-"

LABELS: Final[Mapping[str, Mapping[str, str]]] = {
    "nb": {
        "title": "Hendelsesrapport",
        "exercise": "ØVELSE",
        "generated": "Eksportert",
        "by": "av",
        "times_note": "Tider i Europe/Oslo; UTC i parentes.",
        "masked_note": "Personopplysninger er skjermet etter tjenstlig behov.",
        "summary": "Sammendrag",
        "type": "Type",
        "unit": "Eier (enhet)",
        "accountable": "Ansvarlig",
        "severity": "Alvorlighetsgrad",
        "level": "Nivå",
        "status": "Status",
        "opened": "Åpnet",
        "closed": "Lukket",
        "closing_reason": "Begrunnelse for lukking",
        "final_situation": "Endelig situasjon",
        "activity": "Aktivitetslogg (ICS 214)",
        "time": "Tid",
        "actor": "Aktør",
        "activity_col": "Aktivitet",
        "seq": "Nr.",
        "decisions": "Beslutninger",
        "legal_basis": "Hjemmel",
        "proportionality": "Forholdsmessighet",
        "alternatives": "Vurderte alternativer",
        "measure": "Tiltak",
        "coercive": "tvangstiltak",
        "tasks": "Oppgaver",
        "task": "Oppgave",
        "responsible": "Ansvarlig rolle",
        "deadline": "Frist",
        "notifications": "Varsling per gruppe",
        "group": "Gruppe",
        "update": "Utsendelse",
        "deliveries": "Leveranser",
        "last": "Siste",
        "sitreps": "Situasjonsrapporter",
        "sitrep": "Situasjonsrapport nr.",
        "version": "versjon",
        "approved": "godkjent",
        "draft": "utkast",
        "situation": "Situasjon",
        "actions": "Tiltak",
        "needs": "Behov",
        "next_update": "Neste oppdatering",
        "staff_before_public": "Ansatte varslet før publikum",
        "yes": "ja",
        "no_public_first": "nei – publikum fikk vite først",
        "not_judged": "ingen melding til publikum",
        "tasks_overdue": "Oppgaver over frist (av oppgaver med frist)",
        "promises": "Lovede oppdateringer",
        "kept": "holdt",
        "broken_promises": "brutt",
        "failed": "feilet",
        "alternate": "via alternativ kontakt",
        "findings": "Funn",
        "follow_ups": "Oppfølgingstiltak",
        "follow_up": "Tiltak",
        "owner": "Eier",
        "due": "Frist",
        "overdue": "over frist",
        "fu_open": "åpen",
        "fu_in_progress": "pågår",
        "fu_done": "utført",
        "fu_dropped": "avsluttet uten tiltak",
        "metrics": "Responstider",
        "lessons": "Læringspunkter",
        "integrity": "Integritetserklæring",
        "head_hash": "Kjedens siste hash (SHA-256)",
        "head_seq": "Siste oppføring",
        "entry_count": "Antall oppføringer",
        "verified_at": "Kjeden kontrollert",
        "result": "Resultat",
        "intact": "Kjeden er intakt: hver oppføring stemmer med sin hash og sin forgjenger.",
        "broken": "KJEDEN ER BRUTT",
        "how_to_check": "Slik kontrollerer du rapporten mot loggen",
        "check_note": (
            "Kommandoen sjekker at hendelsens kjede er intakt og at hashen over er en av "
            "dens oppføringer. Loggen kan ha vokst siden eksporten: sammenlign også antall "
            "oppføringer."
        ),
        "none": "Ingen registrert.",
        "folded": "Varsling",
    },
    "en": {
        "title": "Incident report",
        "exercise": "EXERCISE (ØVELSE)",
        "generated": "Exported",
        "by": "by",
        "times_note": "Times in Europe/Oslo; UTC in brackets.",
        "masked_note": "Personal references are masked by need-to-know.",
        "summary": "Summary",
        "type": "Type",
        "unit": "Owner (unit)",
        "accountable": "Accountable",
        "severity": "Severity",
        "level": "Level",
        "status": "Status",
        "opened": "Opened",
        "closed": "Closed",
        "closing_reason": "Reason for closing",
        "final_situation": "Final situation",
        "activity": "Activity log (ICS 214)",
        "time": "Time",
        "actor": "Actor",
        "activity_col": "Activity",
        "seq": "No.",
        "decisions": "Decisions",
        "legal_basis": "Legal basis",
        "proportionality": "Proportionality",
        "alternatives": "Alternatives considered",
        "measure": "Measure",
        "coercive": "coercive measure",
        "tasks": "Tasks",
        "task": "Task",
        "responsible": "Responsible role",
        "deadline": "Deadline",
        "notifications": "Notifications per group",
        "group": "Group",
        "update": "Update",
        "deliveries": "Deliveries",
        "last": "Last",
        "sitreps": "Situation reports",
        "sitrep": "Situation report no.",
        "version": "version",
        "approved": "approved",
        "draft": "draft",
        "situation": "Situation",
        "actions": "Actions",
        "needs": "Needs",
        "next_update": "Next update",
        "staff_before_public": "Staff told before the public",
        "yes": "yes",
        "no_public_first": "no – the public was told first",
        "not_judged": "no public message",
        "tasks_overdue": "Tasks overdue (of tasks with a deadline)",
        "promises": "Promised updates",
        "kept": "kept",
        "broken_promises": "broken",
        "failed": "failed",
        "alternate": "via alternate contact",
        "findings": "Findings",
        "follow_ups": "Follow-up actions",
        "follow_up": "Action",
        "owner": "Owner",
        "due": "Due",
        "overdue": "overdue",
        "fu_open": "open",
        "fu_in_progress": "in progress",
        "fu_done": "done",
        "fu_dropped": "dropped",
        "metrics": "Response metrics",
        "lessons": "Lessons learned",
        "integrity": "Integrity statement",
        "head_hash": "Head hash of the chain (SHA-256)",
        "head_seq": "Last entry",
        "entry_count": "Entries",
        "verified_at": "Chain verified",
        "result": "Result",
        "intact": "The chain is intact: every entry matches its hash and its predecessor.",
        "broken": "THE CHAIN IS BROKEN",
        "how_to_check": "How to check this report against the log",
        "check_note": (
            "The command checks that the incident's chain is intact and that the hash above "
            "is one of its entries. The log may have grown since the export: compare the "
            "entry count as well."
        ),
        "none": "None recorded.",
        "folded": "Notification",
    },
}


@dataclass(frozen=True)
class ChainCheck:
    """The result of verifying one incident's chain: ``problem`` names its first break."""

    at: datetime
    ok: bool
    problem: str | None = None


@dataclass(frozen=True)
class Integrity:
    head_seq: int
    head_hash: str
    entry_count: int
    verified: bool
    verified_at: datetime | None
    problem: str | None

    def as_dict(self, incident_id: str) -> dict[str, Any]:
        return {
            "algorithm": "SHA-256 over canonical JSON, chained by prev_hash",
            "head_seq": self.head_seq,
            "head_hash": self.head_hash,
            "entry_count": self.entry_count,
            "verified": self.verified,
            "verified_at": self.verified_at,
            "problem": self.problem,
            "check": check_command(incident_id, self.head_hash),
        }


def check_command(incident_id: str, head_hash: str) -> str:
    return f"crisis log verify --incident {incident_id} --head {head_hash}"


@dataclass
class Report:
    incident_id: str
    lang: Lang
    generated_at: datetime
    generated_by: str
    masked: bool
    exercise: str | None
    summary: dict[str, Any]
    activity: list[dict[str, Any]]
    decisions: list[dict[str, Any]]
    tasks: list[dict[str, Any]]
    notifications: list[dict[str, Any]]
    sitreps: list[dict[str, Any]]
    integrity: Integrity
    #: ``crisis.review.metrics.incident_metrics(...).as_dict()`` once connected; None if absent.
    metrics: dict[str, Any] | None = None
    #: ``crisis.review.lessons.lessons_of(entries).as_dict()`` once connected; None if absent.
    lessons: dict[str, Any] | None = None
    #: What the viewer saw unmasked, for the access audit (not part of the document).
    shown_entry_ids: list[int] = field(default_factory=list, repr=False)
    shown_refs: list[str] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, Any]:
        out = {
            "incident_id": self.incident_id,
            "lang": self.lang,
            "generated_at": self.generated_at,
            "generated_by": self.generated_by,
            "masked": self.masked,
            "exercise": self.exercise,
            "summary": self.summary,
            "activity": self.activity,
            "decisions": self.decisions,
            "tasks": self.tasks,
            "notifications": self.notifications,
            "sitreps": self.sitreps,
            "metrics": self.metrics,
            "lessons": self.lessons,
            "integrity": self.integrity.as_dict(self.incident_id),
        }
        return dict(_jsonable(out))


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


# --- building ----------------------------------------------------------------------------


def _is_receipt(entry: LogEntry) -> bool:
    return (
        entry.kind == EntryKind.MESSAGE
        and entry.actor == NOTIFIER_ACTOR
        and "status" in (entry.data or {})
    )


def _persons(data: Mapping[str, Any]) -> list[str]:
    return [f"{name}: {value}" for name, value in privacy.personal_items(data)]


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return "; ".join(_text(v) for v in value)
    return str(value)


def _counts_text(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{status} {n}" for status, n in sorted(counts.items()))


def _activity(
    shown: Sequence[privacy.Shown], raw: Sequence[LogEntry], label: str
) -> list[dict[str, Any]]:
    """One row per entry, but one per notified update for the notifiers' receipts: counts
    by group and status at the time of the first receipt (recipients never named)."""
    rows: list[dict[str, Any]] = []
    folded: dict[str, dict[str, Any]] = {}
    by_group: dict[str, dict[str, dict[str, int]]] = {}
    receipts = {e.seq: e for e in raw if _is_receipt(e)}
    for item in shown:
        entry = item.entry
        receipt = receipts.get(entry.seq)
        if receipt is not None:
            update = _text(receipt.data.get("update_id")) or "-"
            group = _text(receipt.data.get("group")) or "-"
            row = folded.get(update)
            if row is None:
                row = folded[update] = {
                    "seq": entry.seq,
                    "at": entry.at,
                    "actor": entry.actor,
                    "kind": "delivery",
                    "activity": "",
                    "persons": [],
                    "folded": 0,
                    "last_at": entry.at,
                }
                rows.append(row)
                by_group[update] = {}
            status = _text(receipt.data.get("status")) or "-"
            counts = by_group[update].setdefault(group, {})
            counts[status] = counts.get(status, 0) + 1
            row["folded"] += 1
            row["last_at"] = entry.at
            continue
        rows.append(
            {
                "seq": entry.seq,
                "at": entry.at,
                "actor": entry.actor,
                "kind": entry.kind,
                "activity": item.text or entry.kind,
                "persons": _persons(item.data),
            }
        )
    for update, row in folded.items():
        groups = "; ".join(f"{g}: {_counts_text(c)}" for g, c in by_group[update].items())
        row["activity"] = f"{label} {update} — {groups}"
    return rows


def _decisions(shown: Sequence[privacy.Shown]) -> list[dict[str, Any]]:
    kinds = (EntryKind.DECISION, EntryKind.ESCALATION, EntryKind.STATUS_CHANGE)
    out = []
    for item in shown:
        entry, data = item.entry, item.data
        if entry.kind not in kinds:
            continue
        out.append(
            {
                "seq": entry.seq,
                "at": entry.at,
                "actor": entry.actor,
                "kind": entry.kind,
                "text": item.text,
                "coercive": rules.is_coercive(data),
                "measure": _text(data.get("measure")),
                "legal_basis": _text(data.get("legal_basis")),
                "proportionality": _text(data.get("proportionality")),
                "alternatives": _text(data.get("alternatives")),
                "to": _text(data.get("to")),
                "reason": _text(data.get("reason")),
                "criteria": [_text(c) for c in data.get("criteria") or []],
                "persons": _persons(data),
            }
        )
    return out


def _tasks(entries: Sequence[LogEntry]) -> list[dict[str, Any]]:
    return [
        {
            "seq": t.seq,
            "title": t.title,
            "responsible_role": t.responsible_role,
            "deadline": t.deadline,
            "status": t.status,
            "updated_at": t.updated_at,
            "checklist": t.checklist,
        }
        for t in projection.tasks(entries)
    ]


def _notifications(raw: Sequence[LogEntry]) -> list[dict[str, Any]]:
    """Per group, each update's delivery counts; counted from the stored receipts (a masked
    recipient would merge every recipient into one), and no recipient is named."""
    groups: dict[str, dict[str, Any]] = {}
    for g in projection.notifications(raw):
        row = groups.setdefault(g.group, {"group": g.group, "updates": [], "totals": {}})
        counts = g.counts
        row["updates"].append(
            {"update_id": g.update_id, "counts": counts, "worst": g.worst, "last_at": g.last_at}
        )
        for status, n in counts.items():
            row["totals"][status] = row["totals"].get(status, 0) + n
    return list(groups.values())


def _sitreps(viewer: Person, raw: Sequence[LogEntry]) -> list[dict[str, Any]]:
    """Each situation report with the version a reader gets: the approved one, or for those
    who read drafts the newest one (the ministry reads approved reports only)."""
    versions: dict[int, dict[int, LogEntry]] = {}
    approved: dict[int, LogEntry] = {}
    for e in raw:
        if e.kind != EntryKind.SITUATION_REPORT or not isinstance(e.data.get("sitrep"), int):
            continue
        number = e.data["sitrep"]
        if e.data.get("action") == "approved":
            approved[number] = e
        elif e.data.get("action") == "version" and isinstance(e.data.get("version"), int):
            versions.setdefault(number, {})[e.data["version"]] = e
    out = []
    for number in sorted(versions.keys() | approved.keys()):
        approval = approved.get(number)
        chosen: LogEntry | None = None
        if approval is not None:
            chosen = versions.get(number, {}).get(approval.data.get("version"))  # type: ignore[arg-type]
        elif versions.get(number):
            newest = versions[number][max(versions[number])]
            chosen = newest if privacy.entry_readable(viewer, newest) else None
        if chosen is None and approval is None:
            continue
        data, _ = privacy.for_viewer(viewer, chosen.data if chosen else {})
        out.append(
            {
                "number": number,
                "status": "approved" if approval else "draft",
                "version": data.get("version"),
                "author": chosen.actor if chosen else "",
                "at": chosen.at if chosen else None,
                "situation": _text(data.get("situation")),
                "actions": _text(data.get("actions")),
                "decisions": _text(data.get("decisions")),
                "needs": _text(data.get("needs")),
                "next_update_at": projection.parse_time(
                    (approval.data.get("next_update_at") if approval else None)
                    or data.get("report_next_update_at")
                ),
                "approved_by": approval.actor if approval else None,
                "approved_at": approval.at if approval else None,
            }
        )
    return out


def _summary(incident: Incident, shown: Sequence[privacy.Shown]) -> dict[str, Any]:
    closing = None
    if incident.status == Status.CLOSED.value:
        closing = next(
            (
                s
                for s in reversed(shown)
                if s.entry.kind == EntryKind.STATUS_CHANGE
                and s.data.get("status") == Status.CLOSED.value
            ),
            None,
        )
    return {
        "title": incident.title,
        "type": incident.type,
        "unit": incident.unit,
        "accountable_role": incident.accountable_role,
        "accountable_person": incident.accountable_person,
        "severity": incident.severity,
        "level": incident.level,
        "status": incident.status,
        "exercise": incident.exercise,
        "opened_at": incident.opened_at,
        "closed_at": incident.closed_at,
        "closed_by": closing.entry.actor if closing else None,
        "closing_reason": _text(closing.data.get("reason")) if closing else None,
        "final_situation": _text(closing.data.get("final_situation")) if closing else None,
    }


class _Masked(NamedTuple):
    """A lesson entry as the viewer reads it (``lessons_of`` takes any such row)."""

    seq: int
    kind: str
    at: datetime
    actor: str
    text: str
    data: dict[str, Any]


def _lesson_views(shown: Sequence[privacy.Shown]) -> list[_Masked]:
    return [
        _Masked(s.entry.seq, s.entry.kind, s.entry.at, s.entry.actor, s.text, s.data)
        for s in shown
        if s.entry.kind in LESSON_KINDS
    ]


def build_report(
    *,
    incident: Incident,
    entries: Sequence[LogEntry],
    viewer: Person,
    now: datetime,
    lang: Lang = "nb",
    check: ChainCheck | None = None,
    metrics: dict[str, Any] | None = None,
) -> Report:
    """The report of ``incident`` from its whole chain ``entries`` (seq order), as ``viewer``
    may read it. ``check`` is the chain's verification at export time (unverified if None);
    the head hash and count are of ``entries`` themselves, so they match what was read.
    ``metrics`` is the JSON-ready response metrics, shown when given; the lessons learned are
    read from the entries as the viewer sees them."""
    shown: list[privacy.Shown] = []
    ids: list[int] = []
    refs: list[str] = []
    for entry in entries:
        if not privacy.entry_readable(viewer, entry):
            continue
        item, unmasked = privacy.entry_for_viewer(viewer, entry)
        if unmasked:
            ids.append(entry.id or 0)
            refs += unmasked
        shown.append(item)
    last = entries[-1] if entries else None
    integrity = Integrity(
        head_seq=last.seq if last else 0,
        head_hash=last.hash if last else GENESIS,
        entry_count=len(entries),
        verified=bool(check and check.ok),
        verified_at=check.at if check else None,
        problem=check.problem if check else "not verified",
    )
    return Report(
        incident_id=incident.id,
        lang=lang,
        generated_at=now,
        generated_by=f"user:{viewer.name}",
        masked=not privacy.sees_identities(viewer),
        exercise=incident.exercise,
        summary=_summary(incident, shown),
        activity=_activity(shown, entries, LABELS[lang]["folded"]),
        decisions=_decisions(shown),
        tasks=_tasks(entries),
        notifications=_notifications(entries),
        sitreps=_sitreps(viewer, entries),
        integrity=integrity,
        metrics=metrics,
        lessons=lessons_of(_lesson_views(shown)).as_dict(now=now),
        shown_entry_ids=ids,
        shown_refs=refs,
    )


# --- rendering ---------------------------------------------------------------------------


def _oslo(value: datetime | str | None) -> str:
    if value is None:
        return "–"
    value = as_utc(value)
    local = value.astimezone(OSLO).strftime("%d.%m.%Y %H:%M:%S")
    return f"{local} ({value.astimezone(UTC).strftime('%H:%M:%S')} UTC)"


_ENV = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENV.filters["oslo"] = _oslo
_ENV.filters["duration"] = format_duration
STYLESHEET: Final = (TEMPLATES / "report.css").read_text(encoding="utf-8")
#: The CSP source of the inline stylesheet: an HTML report served to a browser allows it alone.
STYLE_HASH: Final = (
    "'sha256-" + base64.b64encode(hashlib.sha256(STYLESHEET.encode()).digest()).decode() + "'"
)


def render_json(report: Report) -> bytes:
    return json.dumps(report.as_dict(), ensure_ascii=False, indent=1).encode("utf-8")


def render_html(report: Report) -> str:
    return _ENV.get_template("report.html").render(
        r=report,
        t=LABELS[report.lang],
        metric_labels={k: v[report.lang == "en"] for k, v in METRIC_LABELS.items()},
        durations=DURATIONS,
        css=STYLESHEET,
        check=check_command(report.incident_id, report.integrity.head_hash),
    )


def _local_fetcher() -> Any:
    """WeasyPrint's fetcher for ``data:`` URLs and files under the templates only: a report
    never makes a network request (a link in an entry's text is text, never fetched)."""
    from weasyprint.urls import URLFetcher

    root = TEMPLATES.resolve()

    class LocalOnly(URLFetcher):
        def fetch(self, url: str, headers: Any = None) -> Any:
            scheme = url.partition(":")[0].lower()
            if scheme == "file":
                path = Path(url.removeprefix("file://").split("?")[0]).resolve()
                if not path.is_relative_to(root):
                    raise ValueError(f"outside the report's templates: {url}")
            elif scheme != "data":
                raise ValueError(f"the report fetches nothing from the network: {url}")
            return super().fetch(url, headers)

    return LocalOnly(allowed_protocols=("file", "data"), fail_on_errors=False)


def render_pdf(report: Report, *, html: str | None = None) -> bytes:
    """The same HTML through WeasyPrint (base URL the templates directory)."""
    from weasyprint import HTML

    document = HTML(
        string=html if html is not None else render_html(report),
        base_url=str(TEMPLATES),
        url_fetcher=_local_fetcher(),
    )
    pdf: bytes = document.write_pdf()
    return pdf


def render(report: Report, fmt: Format) -> bytes:
    if fmt == "json":
        return render_json(report)
    if fmt == "html":
        return render_html(report).encode("utf-8")
    return render_pdf(report)


def file_name(report: Report, fmt: Format) -> str:
    """``rapport-<incident>-<UTC time>.<fmt>``, the incident id reduced to safe letters."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", report.incident_id).strip("._") or "incident"
    stamp = report.generated_at.astimezone(UTC).strftime("%Y%m%dT%H%MZ")
    prefix = "rapport" if report.lang == "nb" else "report"
    return f"{prefix}-{safe}-{stamp}.{fmt}"


# --- export ------------------------------------------------------------------------------


async def check_chain(session: AsyncSession, *, incident_id: str, now: datetime) -> ChainCheck:
    """Verify the incident's chain as it is stored now (``crisis log verify --incident``)."""
    result = await verify_log(session, incident_id=incident_id)
    problem = str(result.breaks[0]) if result.breaks else None
    return ChainCheck(at=now, ok=result.ok, problem=problem)


async def record_export(
    session: AsyncSession, *, report: Report, viewer: Person, fmt: Format
) -> DataAccess:
    """One access-audit row per export, with the format as its channel: the references the
    viewer saw unmasked (none when masked). Flushes; the caller commits."""
    row = DataAccess(
        actor=f"user:{viewer.name}",
        role=viewer.role,
        incident_id=report.incident_id,
        entry_ids=sorted(set(report.shown_entry_ids)),
        inmate_refs=sorted(set(report.shown_refs)),
        channel=f"{CHANNEL_PREFIX}{fmt}",
        need=privacy.NEED.get(viewer.role, ""),
    )
    session.add(row)
    await session.flush()
    return row


async def prepare_report(
    session: AsyncSession,
    *,
    incident_id: str,
    viewer: Person,
    fmt: Format,
    lang: Lang = "nb",
    now: datetime | None = None,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Verify, read, build and record the export of ``fmt`` in the audit (flushed; the
    caller commits). Raises ``IncidentNotFound``.

    The chain is verified before it is read, so the head the report states is one the
    verification covered or one appended since (which the reader's check then covers).
    """
    now = now or utcnow()
    incident = await session.get(Incident, incident_id)
    if incident is None:
        raise log.IncidentNotFound(incident_id)
    check = await check_chain(session, incident_id=incident_id, now=now)
    entries = await log.timeline(session, incident_id)
    if progress is not None:
        progress(f"{len(entries)} entries read, chain {'intact' if check.ok else 'BROKEN'}")
    report = build_report(
        incident=incident,
        entries=entries,
        viewer=viewer,
        now=now,
        lang=lang,
        check=check,
        metrics=incident_metrics(incident=incident, entries=entries, now=now).as_dict(),
    )
    await record_export(session, report=report, viewer=viewer, fmt=fmt)
    return report


async def export_report(
    session: AsyncSession,
    *,
    incident_id: str,
    viewer: Person,
    fmt: Format,
    lang: Lang = "nb",
    now: datetime | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[Report, bytes]:
    """:func:`prepare_report`, then rendered in ``fmt``."""
    report = await prepare_report(
        session,
        incident_id=incident_id,
        viewer=viewer,
        fmt=fmt,
        lang=lang,
        now=now,
        progress=progress,
    )
    if progress is not None:
        progress(f"rendering {fmt}")
    return report, render(report, fmt)
