"""Notification service: the entry points playbooks, sitreps and the API call.

Plain keyword-only functions over an ``AsyncSession`` (they flush, the caller commits). They
only write the outbox and the crisis log; delivery is the dispatcher's job
(:mod:`notifiers.dispatcher`, its own process), never done inline.

- :func:`request_update` — one facts version to stakeholder groups (a playbook's plan).
- :func:`approve_update` — the second person of the two-person rule.
- :func:`acknowledge` — a recipient confirms (reply code or link).
- :func:`correct_update` — a correction or cancellation to exactly the original recipients.
- :func:`retry_failed` — failed deliveries go to the dispatcher again (a person asks).
- :func:`send_sitrep` — an approved situation report to the ministry.
- :func:`approve_translation` — a person approves one template translation.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from crisis.clock import as_utc, utcnow
from crisis.log import IncidentNotFound
from crisis.log.models import Incident, LogEntry
from notifiers import logbook, rendering
from notifiers.config import (
    APPROVAL_KINDS,
    GROUP_KINDS,
    PUBLIC_KINDS,
    STAFF_KINDS,
    Group,
    NotifyConfig,
    default_config,
)
from notifiers.models import (
    MessageStatus,
    NotifyUpdate,
    OutboxMessage,
    TranslationApproval,
    UpdateKind,
)

#: Order in which groups of one update are written (and so dispatched): staff first.
GROUP_ORDER = (
    "leaders",
    "staff",
    "safety",
    "unions",
    "cooperating",
    "inmates",
    "ministry",
    "families",
    "media",
    "public",
)


class NotifyError(ValueError):
    """Refused request (a clear message; nothing is written)."""

    principle: str | None = None

    def __init__(self, field: str, message: str, status: int = 422) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message, self.status = field, message, status


class ApprovalRefused(NotifyError):
    principle = "to-personsregel"


class StaffFirstRefused(NotifyError):
    principle = "ansatte-foerst"


@dataclass(frozen=True)
class Target:
    """One resolved recipient of an update."""

    recipient: str
    group: str  # kind
    group_id: str
    languages: tuple[str, ...]
    ack_required: bool
    contact_index: int = 0  # a correction starts on the contact that delivered the original


def facts_hash(facts: Mapping[str, Any], next_update_at: datetime) -> str:
    """The facts version every group's message of one update carries."""
    blob = json.dumps(
        {"facts": facts, "next_update_at": as_utc(next_update_at).isoformat()},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


async def db_translation_approvals(session: AsyncSession) -> set[tuple[str, str, str]]:
    rows = (await session.exec(select(TranslationApproval))).all()
    return {(r.template, r.language, r.sha256) for r in rows}


def resolve_targets(
    config: NotifyConfig, *, groups: Sequence[str], unit: str | None, alarm: bool
) -> tuple[list[Target], list[str]]:
    """Recipients of the named group kinds for an incident of ``unit``; unknown kinds raise.

    Returns (targets, kinds that have no configured group). A person in several groups gets
    one message, from the highest-priority group.
    """
    for kind in groups:
        if kind not in GROUP_KINDS:
            raise NotifyError("groups", f"unknown group {kind!r} (known: {', '.join(GROUP_KINDS)})")
    ordered = sorted(dict.fromkeys(groups), key=GROUP_ORDER.index)
    seen: set[str] = set()
    out: list[Target] = []
    missing: list[str] = []
    for kind in ordered:
        found = config.groups_for(kind, unit)
        if not found:
            missing.append(kind)
        for group in found:
            for member in group.members:
                if member in seen:
                    continue
                seen.add(member)
                person = config.person(member)
                out.append(
                    Target(
                        recipient=member,
                        group=kind,
                        group_id=group.id,
                        languages=(group.language,) if group.language else person.languages,
                        ack_required=group.ack_required or (alarm and kind in STAFF_KINDS),
                    )
                )
    return out, missing


def receipt(
    update: NotifyUpdate,
    *,
    incident_id: str,
    message_id: int | None,
    group: str,
    recipient: str,
    status: str,
    attempt: int = 0,
    channel: str | None = None,
    error: str | None = None,
    **extra: Any,
) -> logbook.Receipt:
    """One ``message`` log entry: what the board needs to show delivery per group."""
    data = {
        "update_id": update.id,
        "facts_hash": update.facts_hash,
        "message_id": message_id,
        "group": group,
        "recipient": recipient,
        "channel": channel,
        "status": status,
        "attempt": attempt,
        "error": error,
        **extra,
    }
    text = f"Varsel {status}: {group}/{recipient}"
    if error:
        text += f" ({error})"
    return logbook.Receipt(incident_id=incident_id, text=text, data=data)


def _receipt(message: OutboxMessage, update: NotifyUpdate, status: str, **extra: Any) -> Any:
    return receipt(
        update,
        incident_id=message.incident_id,
        message_id=message.id,
        group=message.group,
        recipient=message.recipient,
        status=status,
        attempt=extra.pop("attempt", message.total_attempts),
        **extra,
    )


class _Renderer:
    """Renders each (language, fallback) once when no per-recipient code is involved."""

    def __init__(
        self, config: NotifyConfig, update: NotifyUpdate, original_at: datetime | None = None
    ) -> None:
        self.config, self.update, self.original_at = config, update, original_at
        self._cache: dict[tuple[str, str | None], rendering.Rendered] = {}

    def __call__(
        self, language: str, skipped: str | None, ack_code: str | None
    ) -> rendering.Rendered:
        key = (language, skipped)
        if ack_code is None and key in self._cache:
            return self._cache[key]
        ack_url = None
        if ack_code:
            base = self.config.public_base_url.rstrip("/")
            ack_url = f"{base}/api/v1/notifications/ack/{ack_code}"
        rendered = rendering.render(
            self.update.template,
            language=language,
            facts=self.update.facts,
            next_update_at=self.update.next_update_at,
            exercise=self.update.exercise,
            ack_code=ack_code,
            ack_url=ack_url,
            original_at=self.original_at,
            fallback_from=skipped,
        )
        if ack_code is None:
            self._cache[key] = rendered
        return rendered


def message_values(
    renderer: _Renderer,
    target: Target,
    approvals: set[tuple[str, str, str]],
    *,
    status: MessageStatus = MessageStatus.PENDING,
    escalated_from: int | None = None,
) -> dict[str, Any]:
    """The outbox row for one target (plain values: 10,000 of them are inserted in bulk)."""
    update = renderer.update
    language, skipped = rendering.choose_language(update.template, target.languages, approvals)
    ack_code = secrets.token_urlsafe(12) if target.ack_required else None
    rendered = renderer(language, skipped, ack_code)
    return {
        "update_id": update.id,
        "incident_id": update.incident_id,
        "exercise": update.exercise,
        "group": target.group,
        "group_id": target.group_id,
        "recipient": target.recipient,
        "language": rendered.language,
        "title": rendered.title,
        "body": rendered.body,
        "status": status.value,
        "contact_index": target.contact_index,
        "attempts": 0,
        "total_attempts": 0,
        "next_attempt_at": utcnow(),
        "last_error": (
            f"translation {skipped} not approved, sent in {language}" if skipped else None
        ),
        "ack_code": ack_code,
        "ack_deadline": None,
        "acknowledged_at": None,
        "acknowledged_by": None,
        "escalated": False,
        "escalated_from": escalated_from,
        "sent_at": None,
        "channel": None,
    }


async def insert_messages(session: AsyncSession, rows: list[dict[str, Any]]) -> list[int]:
    """Bulk insert outbox rows of one update (distinct recipients); their ids in order.

    One executemany, then one select: ``INSERT … RETURNING`` with a guaranteed order runs
    row by row on SQLite, 10,000 round trips for a big update.
    """
    if not rows:
        return []
    table = OutboxMessage.__table__  # type: ignore[attr-defined]
    await session.exec(insert(table), params=rows)
    update_id = rows[0]["update_id"]
    recipients = {r["recipient"] for r in rows}
    found = await session.exec(
        select(OutboxMessage.recipient, OutboxMessage.id).where(
            OutboxMessage.update_id == update_id
        )
    )
    ids: dict[str, int] = {}
    for recipient, mid in found.all():  # the newest row per recipient is the one just written
        if recipient in recipients:
            ids[recipient] = max(ids.get(recipient, 0), int(mid or 0))
    return [ids[r["recipient"]] for r in rows]


async def request_update(session: AsyncSession, **kwargs: Any) -> NotifyUpdate:
    """Queue one facts version for the named stakeholder groups of an incident: the
    arguments of :func:`prepare_update` (which says what they mean), then
    :func:`write_update`. Returns the update (its ``id`` is the ``update_id`` in every log
    entry)."""
    return await write_update(session, await prepare_update(session, **kwargs))


@dataclass
class PreparedUpdate:
    """An update with its rendered outbox rows, read and rendered but not written."""

    update: NotifyUpdate
    rows: list[dict[str, Any]]
    missing: list[str]
    unit: str
    send_at: datetime | None


async def prepare_update(
    session: AsyncSession,
    *,
    config: NotifyConfig | None = None,
    incident_id: str,
    facts: Mapping[str, Any],
    groups: Sequence[str],
    template: str,
    next_update_at: datetime | None,
    author: str,
    exercise: str | None = None,
    kind: str = UpdateKind.UPDATE.value,
    targets: Sequence[Target] | None = None,
    corrects_update_id: str | None = None,
    original_at: datetime | None = None,
    send_at: datetime | None = None,
    approvals: set[tuple[str, str, str]] | None = None,
    staff_covered: bool = False,
) -> PreparedUpdate:
    """Everything of an update that reads or renders, nothing that writes: on SQLite the
    first write takes the database's single writer lock (the ingest waits for it), so the
    rendering of every recipient's message is done before it.

    ``facts`` has ``title``, ``known`` (what is known) and ``actions`` (what is being done),
    each plain text or ``{nb: …, en: …, pl: …}``. ``next_update_at`` is required. The
    incident's exercise flag is authoritative (``exercise`` can only add one). Messages to
    families, ministry, media, public and inmates wait for :func:`approve_update`; alarms to
    staff go at once. ``send_at`` delays delivery (a playbook's offset); the gates still apply then.
    ``approvals``: the approved translations, if the caller has read them already.

    Staff first, per incident: an update to media or the public for an incident whose staff
    have no message yet also goes to the unit's staff groups, with the same facts (the
    dispatcher then holds the public until they are told); with no staff group configured
    for the unit it is refused. ``staff_covered``: the caller queues a staff update for the
    incident in the same transaction (a playbook's plan).
    """
    config = config or default_config()
    if next_update_at is None:
        raise rendering.MissingNextUpdate(
            "next_update_at: every message must say when the next update comes"
        )
    for key in ("known", "actions") if template != "sitrep" else ("known",):
        if not facts.get(key):
            raise NotifyError(f"facts.{key}", "required: what is known and what is being done")
    if kind not in {k.value for k in UpdateKind}:
        raise NotifyError("kind", f"unknown kind {kind!r}")
    incident = await session.get(Incident, incident_id)
    if incident is None:
        raise IncidentNotFound(incident_id)
    next_update_at = as_utc(next_update_at)
    if targets is None:
        told = (
            staff_covered
            or not PUBLIC_KINDS & set(groups)
            or await staff_messaged(session, incident_id=incident_id)
        )
        added = [] if told or STAFF_KINDS & set(groups) else sorted(STAFF_KINDS)
        targets, missing = resolve_targets(
            config, groups=[*groups, *added], unit=incident.unit, alarm=kind == UpdateKind.ALARM
        )
        missing = [k for k in missing if k not in added]
        if not told and not STAFF_KINDS & {t.group for t in targets}:
            raise StaffFirstRefused(
                "groups",
                "ansatte informeres før offentligheten, men enheten "
                f"{incident.unit} har ingen ansattgruppe / staff are told before the "
                f"public, and unit {incident.unit} has no staff group configured",
                status=409,
            )
    else:
        missing = []
    approval_required = any(t.group in APPROVAL_KINDS for t in targets)
    update = NotifyUpdate(
        id=secrets.token_hex(8),
        incident_id=incident_id,
        kind=kind,
        template=template,
        facts=json.loads(json.dumps(dict(facts), default=str)),
        facts_hash=facts_hash(facts, next_update_at),
        groups=sorted({t.group for t in targets} | set(missing)),
        next_update_at=next_update_at,
        author=author,
        exercise=incident.exercise or exercise,
        corrects_update_id=corrects_update_id,
        approval_required=approval_required,
    )
    if approvals is None:
        approvals = await db_translation_approvals(session)
    render = _Renderer(config, update, original_at)
    rows = [
        message_values(
            render,
            target,
            approvals,
            status=(
                MessageStatus.AWAITING_APPROVAL
                if target.group in APPROVAL_KINDS
                else MessageStatus.PENDING
            ),
        )
        for target in targets
    ]
    if send_at is not None:
        for row in rows:
            row["next_attempt_at"] = as_utc(send_at)
    return PreparedUpdate(update, rows, missing, incident.unit, send_at)


async def staff_messaged(session: AsyncSession, *, incident_id: str) -> bool:
    """Whether any message to the incident's staff groups exists (whatever its state)."""
    found = await session.exec(
        select(OutboxMessage.id)
        .where(
            OutboxMessage.incident_id == incident_id,
            col(OutboxMessage.group).in_(STAFF_KINDS),
        )
        .limit(1)
    )
    return found.first() is not None


async def write_update(session: AsyncSession, prepared: PreparedUpdate) -> NotifyUpdate:
    """Write a prepared update: the update, its outbox rows and a receipt for each (flush,
    the caller commits)."""
    update, rows, send_at = prepared.update, prepared.rows, prepared.send_at
    incident_id = update.incident_id
    session.add(update)
    await session.flush()
    ids = await insert_messages(session, rows)
    receipts = []
    for mid, row in zip(ids, rows, strict=True):
        extra: dict[str, Any] = {"language": row["language"], "kind": update.kind}
        if send_at is not None:
            extra["send_at"] = as_utc(send_at)
        if row["last_error"]:
            extra["translation_fallback"] = row["last_error"]
        held = row["status"] == MessageStatus.AWAITING_APPROVAL
        receipts.append(
            receipt(
                update,
                incident_id=incident_id,
                message_id=mid,
                group=row["group"],
                recipient=row["recipient"],
                status="held" if held else "queued",
                error="venter på godkjenning (to-personsregel)" if held else None,
                **extra,
            )
        )
    for kind_ in prepared.missing:
        receipts.append(
            logbook.Receipt(
                incident_id=incident_id,
                text=f"Varsel: ingen mottakergruppe {kind_} for enhet {prepared.unit}",
                data={
                    "update_id": update.id,
                    "facts_hash": update.facts_hash,
                    "group": kind_,
                    "recipient": None,
                    "channel": None,
                    "status": "failed",
                    "attempt": 0,
                    "error": f"no {kind_} group configured for unit {prepared.unit}",
                },
            )
        )
    await logbook.write(session, receipts)
    return update


async def _update(session: AsyncSession, update_id: str) -> NotifyUpdate:
    update = await session.get(NotifyUpdate, update_id)
    if update is None:
        raise NotifyError("update_id", f"no notification update {update_id!r}", status=404)
    return update


async def _askers(session: AsyncSession, update: NotifyUpdate) -> set[str]:
    """Who asked for an update: its author; for a playbook's, also the person who opened the
    incident by hand (their opening made the plan, so they are not the second person)."""
    if not update.author.startswith("rule:"):
        return {update.author}
    opened_by = await session.exec(
        select(LogEntry.actor).where(LogEntry.incident_id == update.incident_id, LogEntry.seq == 1)
    )
    return {update.author, *opened_by.all()}


async def approve_update(session: AsyncSession, *, update_id: str, approver: str) -> NotifyUpdate:
    """Second person approves: releases the update's families/ministry/media/public messages."""
    update = await _update(session, update_id)
    if not update.approval_required:
        raise ApprovalRefused("update_id", "this update needs no approval", status=409)
    if update.approved_by:
        raise ApprovalRefused("update_id", f"already approved by {update.approved_by}", 409)
    if approver in await _askers(session, update):
        raise ApprovalRefused(
            "approver",
            "to-personsregel: the author cannot approve their own message / "
            "two-person rule: a second person must approve",
            status=403,
        )
    update.approved_by = approver
    update.approved_at = utcnow()
    session.add(update)
    held = (
        await session.exec(
            select(OutboxMessage).where(
                OutboxMessage.update_id == update_id,
                OutboxMessage.status == MessageStatus.AWAITING_APPROVAL.value,
            )
        )
    ).all()
    for m in held:
        m.status = MessageStatus.PENDING.value
        m.next_attempt_at = utcnow()
        session.add(m)
    await session.flush()
    await logbook.write(
        session, [_receipt(m, update, "queued", approved_by=approver) for m in held]
    )
    return update


async def acknowledge(
    session: AsyncSession, *, code: str, by: str | None = None, via: str | None = None
) -> OutboxMessage:
    """A recipient confirms a message by its code; logs who (the recipient, and the user) and,
    when given, how (``via``: ``link`` for the confirmation page, ``sms`` for a reply)."""
    message = (
        await session.exec(select(OutboxMessage).where(OutboxMessage.ack_code == code))
    ).first()
    if message is None:
        raise NotifyError("code", "unknown confirmation code", status=404)
    if message.status == MessageStatus.ACKNOWLEDGED:
        return message
    if message.status != MessageStatus.SENT:
        raise NotifyError("code", f"message is {message.status}, not sent", status=409)
    update = await _update(session, message.update_id)
    table = OutboxMessage.__table__  # type: ignore[attr-defined]
    # Only while still sent: of two confirmations at once (a double click) one is logged.
    changed = await session.exec(
        table.update()
        .where(table.c.id == message.id, table.c.status == MessageStatus.SENT.value)
        .values(
            status=MessageStatus.ACKNOWLEDGED.value,
            acknowledged_at=utcnow(),
            acknowledged_by=by or f"recipient:{message.recipient}",
        )
    )
    await session.refresh(message)
    if message.status != MessageStatus.ACKNOWLEDGED:
        raise NotifyError("code", f"message is {message.status}, not sent", status=409)
    if changed.rowcount == 0:
        return message
    extra = {"via": via} if via else {}
    await logbook.write(
        session,
        [
            _receipt(
                message,
                update,
                "acknowledged",
                channel=message.channel,
                acknowledged_by=message.acknowledged_by,
                **extra,
            )
        ],
    )
    return message


async def correct_update(
    session: AsyncSession,
    *,
    config: NotifyConfig | None = None,
    update_id: str,
    facts: Mapping[str, Any],
    next_update_at: datetime | None,
    author: str,
    cancel: bool = False,
    message_id: int | None = None,
) -> NotifyUpdate:
    """A correction (or cancellation) to exactly those who received the update.

    With ``message_id``: to those who received that message's group in that update.
    """
    config = config or default_config()
    original = await _update(session, update_id)
    stmt = select(OutboxMessage).where(
        OutboxMessage.update_id == update_id,
        col(OutboxMessage.status).in_([MessageStatus.SENT.value, MessageStatus.ACKNOWLEDGED.value]),
    )
    if message_id is not None:
        ref = await session.get(OutboxMessage, message_id)
        if ref is None or ref.update_id != update_id:
            raise NotifyError("message_id", f"no message {message_id}", status=404)
        stmt = stmt.where(OutboxMessage.group_id == ref.group_id)
    received = (await session.exec(stmt.order_by(col(OutboxMessage.id)))).all()
    if not received:
        raise NotifyError("update_id", "nobody has received this update yet", status=409)
    targets = [
        Target(
            recipient=m.recipient,
            group=m.group,
            group_id=m.group_id,
            languages=(m.language,),
            ack_required=False,
            contact_index=m.contact_index,
        )
        for m in received
    ]
    return await request_update(
        session,
        config=config,
        incident_id=original.incident_id,
        facts={"title": original.facts.get("title", ""), **dict(facts)},
        groups=sorted({t.group for t in targets}),
        template="cancellation" if cancel else "correction",
        next_update_at=next_update_at,
        author=author,
        exercise=original.exercise,
        kind=(UpdateKind.CANCELLATION if cancel else UpdateKind.CORRECTION).value,
        targets=targets,
        corrects_update_id=original.id,
        original_at=original.created_at,
    )


async def retry_failed(
    session: AsyncSession,
    *,
    update_id: str,
    by: str,
    group: str | None = None,
    message_id: int | None = None,
) -> list[OutboxMessage]:
    """Failed messages of an update (one group's, or one message) are delivered again from
    their primary contact. The dispatcher's gates apply as on the first try (exercise
    isolation, approval, staff first); a ``queued`` receipt names who asked."""
    update = await _update(session, update_id)
    stmt = select(OutboxMessage).where(
        OutboxMessage.update_id == update_id,
        OutboxMessage.status == MessageStatus.FAILED.value,
    )
    if message_id is not None:
        ref = await session.get(OutboxMessage, message_id)
        if ref is None or ref.update_id != update_id:
            raise NotifyError("message_id", f"no message {message_id}", status=404)
        stmt = stmt.where(OutboxMessage.id == message_id)
    if group is not None:
        stmt = stmt.where(OutboxMessage.group == group)
    failed = (await session.exec(stmt.order_by(col(OutboxMessage.id)))).all()
    if not failed:
        raise NotifyError("status", "ingen feilede leveranser / nothing has failed", status=409)
    now = utcnow()
    for m in failed:
        m.status = MessageStatus.PENDING.value
        m.contact_index = 0
        m.attempts = 0
        m.next_attempt_at = now
        session.add(m)
    await session.flush()
    await logbook.write(session, [_receipt(m, update, "queued", retried_by=by) for m in failed])
    return list(failed)


async def send_sitrep(
    session: AsyncSession,
    *,
    config: NotifyConfig | None = None,
    incident_id: str,
    title: str,
    text: str,
    author: str,
    approved_by: str,
    next_update_at: datetime | None,
) -> NotifyUpdate:
    """Send an approved situation report to the ministry group (JD).

    The sitrep flow has already approved ``text`` (``approved_by`` ≠ ``author``), which is
    this update's two-person approval, so the messages go straight to the dispatcher.
    """
    if not approved_by or approved_by == author:
        raise ApprovalRefused("approved_by", "a situation report needs a second person's approval")
    update = await request_update(
        session,
        config=config,
        incident_id=incident_id,
        facts={"title": title, "known": text},
        groups=["ministry"],
        template="sitrep",
        next_update_at=next_update_at,
        author=author,
        kind=UpdateKind.SITREP.value,
    )
    return await approve_update(session, update_id=update.id, approver=approved_by)


async def approve_translation(
    session: AsyncSession, *, template: str, language: str, approved_by: str
) -> TranslationApproval:
    """A person approves the current text of one translation (pinned to its SHA-256)."""
    sha = rendering.template_sha256(template, language)
    if sha is None:
        raise NotifyError("language", f"no template {template}.{language}", status=404)
    row = TranslationApproval(
        template=template, language=language, sha256=sha, approved_by=approved_by
    )
    existing = (
        await session.exec(
            select(TranslationApproval).where(
                TranslationApproval.template == template,
                TranslationApproval.language == language,
                TranslationApproval.sha256 == sha,
            )
        )
    ).first()
    if existing is not None:
        return existing
    session.add(row)
    await session.flush()
    return row


def escalation_next(group: Group, after: str, already: set[str]) -> str | None:
    """The next person in the group's escalation order who has not had this update."""
    order = list(group.escalation or group.members)
    start = order.index(after) + 1 if after in order else 0
    for person in order[start:]:
        if person not in already:
            return person
    return None
