"""Notifications on the board: deliveries folded per update and group, and the actions on
them (approve under the two-person rule, correct or cancel, retry failed deliveries); the
local delivery inbox page ``/inbox``; the incident's messages page.

The actions are forms posting JSON to the notifications API (``web/api/notifications.py``),
so the rules are enforced there, once. :func:`messages_context` gives the partial
``_messages.html`` what it needs; any page that shows an incident can include it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import HTMLResponse, Response
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from crisis import log
from crisis.accounts.models import User
from crisis.domain import permissions
from crisis.domain.rules import NOTIFIER_ACTOR
from crisis.domain.vocabulary import EntryKind, Role, Status
from crisis.log import privacy
from crisis.log.models import Incident, LogEntry
from notifiers.config import APPROVAL_KINDS
from notifiers.models import InboxMessage, MessageStatus, NotifyUpdate, OutboxMessage
from web.api.notifications import notify_config
from web.board.feed import head
from web.board.pages import page_user, render, to_login
from web.deps import SessionDep, scope_of

router = APIRouter(tags=["board"], include_in_schema=False)

#: Worst first: the status a group's line is coloured by.
SEVERITY = (
    "failed",
    "timed_out",
    "held",
    "queued",
    "blocked",
    "cancelled",
    "sent",
    "acknowledged",
)
#: Roles that see the local inbox (what recipients would have received).
INBOX_ROLES = frozenset({Role.ADMIN.value, Role.OPERATOR.value})


def _rank(status_: str) -> int:
    return SEVERITY.index(status_) if status_ in SEVERITY else len(SEVERITY)


@dataclass
class Recipient:
    recipient: str
    status: str
    channel: str | None
    attempt: Any
    error: str | None
    at: datetime
    message_id: int | None
    acknowledged_by: str | None = None


@dataclass
class DeliveryLine:
    """One update to one group: the worst status, counts per status, its recipients."""

    update_id: str
    group: str
    recipients: dict[str, Recipient] = field(default_factory=dict)
    last_at: datetime | None = None
    failed: int = 0  # failed in the outbox now: what a retry would send again

    @property
    def counts(self) -> list[tuple[str, int]]:
        found: dict[str, int] = {}
        for r in self.recipients.values():
            found[r.status] = found.get(r.status, 0) + 1
        return sorted(found.items(), key=lambda kv: _rank(kv[0]))

    @property
    def worst(self) -> str:
        return min((r.status for r in self.recipients.values()), key=_rank, default="queued")


@dataclass
class UpdateView:
    """One update (a facts version) with its lines, and what may be done with it."""

    id: str
    kind: str
    title: str
    author: str
    created_at: datetime | None
    next_update_at: datetime | None
    exercise: str | None
    approval_required: bool
    approved_by: str | None
    corrects: str | None
    known: str = ""
    lines: list[DeliveryLine] = field(default_factory=list)
    awaiting: int = 0  # messages waiting for the second person
    received: int = 0  # sent or acknowledged: a correction reaches these
    failed: int = 0

    @property
    def held(self) -> bool:
        return self.approval_required and not self.approved_by and self.awaiting > 0


def _plain(value: Any) -> str:
    """A fact as text: plain, or the Norwegian (else first) of ``{nb: …, en: …}``."""
    if isinstance(value, dict):
        value = value.get("nb") or next(iter(value.values()), "")
    return str(value or "")


def fold_receipts(user: User, entries: Sequence[LogEntry]) -> dict[str, dict[str, DeliveryLine]]:
    """update id → group → line, from the notifiers' receipts as this user may see them
    (recipients masked by need-to-know); the last receipt per message wins."""
    out: dict[str, dict[str, DeliveryLine]] = {}
    for e in entries:
        if e.kind != EntryKind.MESSAGE or e.actor != NOTIFIER_ACTOR or "status" not in e.data:
            continue
        shown, _ = privacy.entry_for_viewer(user, e)
        d = shown.data
        update_id = str(d.get("update_id") or "")
        group = str(d.get("group") or "-")
        line = out.setdefault(update_id, {}).setdefault(group, DeliveryLine(update_id, group))
        mid = d.get("message_id")
        key = f"m{mid}" if mid is not None else f"s{e.seq}"
        line.recipients[key] = Recipient(
            recipient=str(d.get("recipient") or "–"),
            status=str(d.get("status")),
            channel=d.get("channel"),
            attempt=d.get("attempt"),
            error=d.get("error"),
            at=e.at,
            message_id=mid if isinstance(mid, int) else None,
            acknowledged_by=d.get("acknowledged_by"),
        )
        line.last_at = e.at
    return out


async def messages_context(
    session: AsyncSession, user: User, incident: Incident, entries: Sequence[LogEntry]
) -> dict[str, Any]:
    """What ``_messages.html`` needs, under one key ``msg`` (a page passes ``**`` of it).

    ``entries``: the incident's log (``crisis.log.timeline``), unmasked; recipients are
    masked here for roles without operational duty, as the API masks them.
    """
    folded = fold_receipts(user, entries)
    updates = (
        await session.exec(
            select(NotifyUpdate)
            .where(NotifyUpdate.incident_id == incident.id)
            .order_by(col(NotifyUpdate.created_at).desc())
        )
    ).all()
    states = (
        await session.exec(
            select(OutboxMessage.update_id, OutboxMessage.group, OutboxMessage.status).where(
                OutboxMessage.incident_id == incident.id
            )
        )
    ).all()
    views: list[UpdateView] = []
    for u in updates:
        view = UpdateView(
            id=u.id,
            kind=u.kind,
            title=str(u.facts.get("title") or ""),
            author=u.author,
            created_at=u.created_at,
            next_update_at=u.next_update_at,
            exercise=u.exercise,
            approval_required=u.approval_required,
            approved_by=u.approved_by,
            corrects=u.corrects_update_id,
            known=_plain(u.facts.get("known")),
        )
        lines = folded.get(u.id, {})
        for update_id, group, state in states:
            if update_id != u.id:
                continue
            if state == MessageStatus.AWAITING_APPROVAL:
                view.awaiting += 1
            elif state in (MessageStatus.SENT, MessageStatus.ACKNOWLEDGED):
                view.received += 1
            elif state == MessageStatus.FAILED:
                view.failed += 1
                if group in lines:
                    lines[group].failed += 1
        order = sorted(lines, key=lambda g: (g in APPROVAL_KINDS, g))
        view.lines = [lines[g] for g in order]
        views.append(view)
    # Receipts of an update this database holds no row of (another notifier's, a restored
    # log): shown all the same, with nothing to act on.
    known_ids = {u.id for u in updates}
    for update_id, lines in folded.items():
        if update_id in known_ids:
            continue
        times = [line.last_at for line in lines.values() if line.last_at is not None]
        views.append(
            UpdateView(
                id=update_id,
                kind="message",
                title="",
                author="",
                created_at=min(times) if times else None,
                next_update_at=None,
                exercise=incident.exercise,
                approval_required=False,
                approved_by=None,
                corrects=None,
                lines=[lines[g] for g in sorted(lines)],
            )
        )
    open_ = incident.status != Status.CLOSED.value
    return {
        "msg": {
            "incident": incident,
            "updates": views,
            "held": [v for v in views if v.held],
            "me": f"user:{user.name}",
            "can_approve": open_ and permissions.allowed(user.role, permissions.Action.APPROVE),
            "can_notify": open_ and permissions.allowed(user.role, permissions.Action.NOTIFY),
            "closed": not open_,
        }
    }


async def _visible(request: Request, session: Any, user: User, incident_id: str) -> Incident:
    incident: Incident | None = await session.get(Incident, incident_id)
    if incident is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "ukjent hendelse / unknown incident")
    if user.role == Role.MINISTRY or not scope_of(user, request.app.state.organisation).allows(
        incident
    ):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "utenfor ditt ansvarsområde / out of scope")
    return incident


@router.get("/incidents/{incident_id}/messages", response_class=HTMLResponse, response_model=None)
async def incident_messages(incident_id: str, request: Request, session: SessionDep) -> Response:
    """The incident's notifications alone: deliveries and the actions on them."""
    user = await page_user(request, session)
    if user is None:
        return to_login(request)
    incident = await _visible(request, session, user, incident_id)
    entries = await log.timeline(session, incident.id)
    ctx = await messages_context(session, user, incident, entries)
    return render(
        request,
        "messages.html",
        user=user,
        incident=incident,
        resume=await head(session),
        page="messages",
        **ctx,
    )


@router.get("/inbox", response_class=HTMLResponse, response_model=None)
async def inbox_page(
    request: Request, session: SessionDep, recipient: str | None = None
) -> Response:
    """The local delivery inbox: every message each recipient would have received, by
    channel, newest first (admins; operators for the incidents in their scope)."""
    user = await page_user(request, session)
    if user is None:
        return to_login(request)
    if user.role not in INBOX_ROLES:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "kun admin og operatør / admin, operator")
    scope = scope_of(user, request.app.state.organisation)
    stmt = (
        select(InboxMessage, Incident, OutboxMessage.status)
        .join(Incident, col(Incident.id) == col(InboxMessage.incident_id))
        .join(OutboxMessage, col(OutboxMessage.id) == col(InboxMessage.message_id))
        .order_by(col(InboxMessage.id).desc())
        .limit(1000)
    )
    if not scope.all_units:
        stmt = stmt.where(col(Incident.unit).in_(scope.units))
    if recipient:
        stmt = stmt.where(InboxMessage.recipient == recipient)
    rows = [(m, i, s) for m, i, s in (await session.exec(stmt)).all() if scope.allows(i)]
    config = notify_config(request)
    names = {p.id: p.name for p in config.people}
    by_recipient: dict[str, dict[str, list[tuple[InboxMessage, Incident, str]]]] = {}
    for m, i, s in rows:
        by_recipient.setdefault(m.recipient, {}).setdefault(m.channel, []).append((m, i, s))
    inbox_people = sorted(
        {p.id for p in config.people if any(c.url.startswith("inbox://") for c in p.contacts)}
    )
    return render(
        request,
        "inbox.html",
        user=user,
        by_recipient=sorted(by_recipient.items()),
        names=names,
        total=len(rows),
        recipient=recipient,
        inbox_people=inbox_people,
        resume=await head(session),
        page="inbox",
    )
