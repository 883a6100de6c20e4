"""Notifications API: request, approve (two-person rule), correct; thin views.

Acknowledgements (the link's page, SMS replies) are in :mod:`web.acknowledgements`.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import AfterValidator, BaseModel, Field
from sqlmodel import col, select

from crisis.accounts.models import User
from crisis.domain.permissions import Action, require
from crisis.domain.rules import Violation
from crisis.log import RuleViolation, privacy
from crisis.log.models import Incident
from crisis.sources import jsonlimits
from notifiers import service
from notifiers.config import NotifyConfig, load_notify_config
from notifiers.models import NotifyUpdate, OutboxMessage
from notifiers.rendering import MissingNextUpdate, TemplateError
from web.api.incidents import actor_of
from web.deps import CurrentUser, Org, RowId, SessionDep, scope_of

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1/notifications", tags=["notifications"])


def notify_config(request: Request) -> NotifyConfig:
    """The recipients file, loaded once per app (CRISIS_NOTIFY_CONFIG or the example)."""
    config: NotifyConfig | None = getattr(request.app.state, "notify_config", None)
    if config is None:
        config = load_notify_config(request.app.state.settings.notify_config)
        request.app.state.notify_config = config
    return config


def _refuse(exc: service.NotifyError | TemplateError) -> RuleViolation:
    """Refusals in the one error shape ``{"errors": [{"index", "field", "message"}]}``."""
    if isinstance(exc, service.NotifyError):
        return _refusal(exc.status, exc.field, exc.message, exc.principle)
    field = "next_update_at" if isinstance(exc, MissingNextUpdate) else "template"
    return _refusal(422, field, str(exc))


def _refusal(code: int, field: str, message: str, principle: str | None = None) -> RuleViolation:
    return RuleViolation([Violation(field, message, principle)], status=code)


#: Free JSON the API stores: within crisis.jsonlimits' depth, member and string limits.
FreeJson = Annotated[dict[str, Any], AfterValidator(jsonlimits.validated)]


class UpdateRequest(BaseModel):
    incident_id: str
    groups: list[str] = Field(min_length=1)
    template: str = "update"
    kind: Literal["update", "alarm"] = "update"
    facts: FreeJson
    next_update_at: datetime | None = None
    send_at: datetime | None = None


class CorrectionRequest(BaseModel):
    facts: FreeJson
    next_update_at: datetime | None = None
    cancel: bool = False


class RetryRequest(BaseModel):
    group: str | None = Field(default=None, description="only this group kind's messages")


class TranslationApprove(BaseModel):
    template: str
    language: str


class UpdateOut(BaseModel):
    id: str
    incident_id: str
    kind: str
    template: str
    facts_hash: str
    groups: list[str]
    next_update_at: datetime
    author: str
    exercise: str | None
    approval_required: bool
    approved_by: str | None
    corrects_update_id: str | None
    messages: list[dict[str, Any]] = []


async def _out(session: Any, update: NotifyUpdate, user: User) -> UpdateOut:
    """The update with its messages; who each went to only for roles with operational duty."""
    rows = (
        await session.exec(
            select(OutboxMessage)
            .where(OutboxMessage.update_id == update.id)
            .order_by(col(OutboxMessage.id))
        )
    ).all()
    messages = [
        {
            "id": m.id,
            "group": m.group,
            "recipient": m.recipient,
            "language": m.language,
            "status": m.status,
            "attempts": m.total_attempts,
            "channel": m.channel,
            "error": m.last_error,
        }
        for m in rows
    ]
    if not privacy.has_operational_duty(user):
        messages = [privacy.without_recipients(m)[0] for m in messages]
    return UpdateOut(
        **update.model_dump(exclude={"facts", "created_at", "approved_at"}), messages=messages
    )


async def _visible_incident(session: Any, user: Any, org: Any, incident_id: str) -> Incident:
    incident: Incident | None = await session.get(Incident, incident_id)
    if incident is None:
        raise _refusal(404, "incident_id", f"no incident {incident_id}")
    if not scope_of(user, org).allows(incident):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "utenfor ditt ansvarsområde / out of scope")
    return incident


@router.post("/updates", status_code=status.HTTP_201_CREATED, response_model=UpdateOut)
async def request_update(
    body: UpdateRequest, user: CurrentUser, org: Org, session: SessionDep, request: Request
) -> UpdateOut:
    require(user, Action.NOTIFY)
    await _visible_incident(session, user, org, body.incident_id)
    try:
        update = await service.request_update(
            session,
            config=notify_config(request),
            incident_id=body.incident_id,
            facts=body.facts,
            groups=body.groups,
            template=body.template,
            next_update_at=body.next_update_at,
            author=actor_of(user),
            kind=body.kind,
            send_at=body.send_at,
        )
    except (service.NotifyError, TemplateError) as exc:
        await session.rollback()
        raise _refuse(exc) from None
    await session.commit()
    return await _out(session, update, user)


@router.get("/updates/{update_id}", response_model=UpdateOut)
async def get_update(update_id: str, user: CurrentUser, org: Org, session: SessionDep) -> UpdateOut:
    update = await session.get(NotifyUpdate, update_id)
    if update is None:
        raise _refusal(404, "update_id", f"no notification update {update_id}")
    await _visible_incident(session, user, org, update.incident_id)
    return await _out(session, update, user)


@router.post("/updates/{update_id}/approve", response_model=UpdateOut)
async def approve_update(
    update_id: str, user: CurrentUser, org: Org, session: SessionDep
) -> UpdateOut:
    """The second person of the two-person rule (not the author; a writing role)."""
    require(user, Action.APPROVE)
    update = await session.get(NotifyUpdate, update_id)
    if update is None:
        raise _refusal(404, "update_id", f"no notification update {update_id}")
    await _visible_incident(session, user, org, update.incident_id)
    try:
        update = await service.approve_update(session, update_id=update_id, approver=actor_of(user))
    except service.NotifyError as exc:
        await session.rollback()
        raise _refuse(exc) from None
    await session.commit()
    return await _out(session, update, user)


async def _correct(
    session: Any,
    request: Request,
    user: Any,
    org: Any,
    update_id: str,
    body: CorrectionRequest,
    message_id: int | None = None,
) -> UpdateOut:
    require(user, Action.NOTIFY)
    original = await session.get(NotifyUpdate, update_id)
    if original is None:
        raise _refusal(404, "update_id", f"no notification update {update_id}")
    await _visible_incident(session, user, org, original.incident_id)
    try:
        update = await service.correct_update(
            session,
            config=notify_config(request),
            update_id=update_id,
            facts=body.facts,
            next_update_at=body.next_update_at,
            author=actor_of(user),
            cancel=body.cancel,
            message_id=message_id,
        )
    except (service.NotifyError, TemplateError) as exc:
        await session.rollback()
        raise _refuse(exc) from None
    await session.commit()
    return await _out(session, update, user)


@router.post(
    "/updates/{update_id}/correct", status_code=status.HTTP_201_CREATED, response_model=UpdateOut
)
async def correct_update(
    update_id: str,
    body: CorrectionRequest,
    user: CurrentUser,
    org: Org,
    session: SessionDep,
    request: Request,
) -> UpdateOut:
    """A correction (or ``cancel: true``) to everyone who received the update."""
    return await _correct(session, request, user, org, update_id, body)


@router.post(
    "/messages/{message_id}/correct", status_code=status.HTTP_201_CREATED, response_model=UpdateOut
)
async def correct_message(
    message_id: RowId,
    body: CorrectionRequest,
    user: CurrentUser,
    org: Org,
    session: SessionDep,
    request: Request,
) -> UpdateOut:
    """A correction to everyone who received this message (its update, its group)."""
    message = await session.get(OutboxMessage, message_id)
    if message is None:
        raise _refusal(404, "message_id", f"no message {message_id}")
    return await _correct(session, request, user, org, message.update_id, body, message_id)


async def _retry(
    session: Any,
    user: Any,
    org: Any,
    update_id: str,
    group: str | None = None,
    message_id: int | None = None,
) -> UpdateOut:
    require(user, Action.NOTIFY)
    update = await session.get(NotifyUpdate, update_id)
    if update is None:
        raise _refusal(404, "update_id", f"no notification update {update_id}")
    await _visible_incident(session, user, org, update.incident_id)
    try:
        await service.retry_failed(
            session, update_id=update_id, by=actor_of(user), group=group, message_id=message_id
        )
    except service.NotifyError as exc:
        await session.rollback()
        raise _refuse(exc) from None
    await session.commit()
    return await _out(session, update, user)


@router.post("/updates/{update_id}/retry", response_model=UpdateOut)
async def retry_update(
    update_id: str,
    user: CurrentUser,
    org: Org,
    session: SessionDep,
    body: RetryRequest | None = None,
) -> UpdateOut:
    """Failed deliveries of the update (or of one group of it) are tried again."""
    return await _retry(session, user, org, update_id, group=body.group if body else None)


@router.post("/messages/{message_id}/retry", response_model=UpdateOut)
async def retry_message(
    message_id: RowId, user: CurrentUser, org: Org, session: SessionDep
) -> UpdateOut:
    """One failed message is tried again, from its recipient's primary contact."""
    message = await session.get(OutboxMessage, message_id)
    if message is None:
        raise _refusal(404, "message_id", f"no message {message_id}")
    return await _retry(session, user, org, message.update_id, message_id=message_id)


@router.post("/translations/approve", status_code=status.HTTP_201_CREATED)
async def approve_translation(
    body: TranslationApprove, user: CurrentUser, session: SessionDep
) -> dict[str, Any]:
    """A person approves the current text of one translation (pinned to its SHA-256)."""
    require(user, Action.APPROVE_TRANSLATION)
    try:
        row = await service.approve_translation(
            session, template=body.template, language=body.language, approved_by=actor_of(user)
        )
    except service.NotifyError as exc:
        raise _refuse(exc) from None
    await session.commit()
    logger.info(
        "translation %s.%s (sha256 %s) approved by %s",
        row.template,
        row.language,
        row.sha256,
        row.approved_by,
    )
    return {
        "template": row.template,
        "language": row.language,
        "sha256": row.sha256,
        "approved_by": row.approved_by,
    }
