"""Tables of the notifiers: updates (one facts version), the outbox, attempts, approvals.

An *update* is one facts version sent to several groups; the outbox holds one message per
recipient of an update; every delivery attempt is a row in ``notify_attempts`` and, for the
board, a ``message`` entry in the incident's crisis log.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from crisis.clock import utcnow
from crisis.store.sqltypes import UTCDateTime


class MessageStatus(StrEnum):
    """Outbox states. The log's ``status`` uses the same words (plus ``queued``)."""

    AWAITING_APPROVAL = "awaiting_approval"  # two-person rule: logged as 'held'
    PENDING = "pending"  # due for delivery (logged as 'queued')
    HELD = "held"  # public message waiting for the staff message of the same update
    SENT = "sent"
    ACKNOWLEDGED = "acknowledged"
    FAILED = "failed"  # every attempt on every contact failed
    BLOCKED = "blocked"  # exercise isolation: not a participant of the exercise
    CANCELLED = "cancelled"


#: States after which a message will not change again (except sent → acknowledged).
FINAL = frozenset(
    {
        MessageStatus.SENT,
        MessageStatus.ACKNOWLEDGED,
        MessageStatus.FAILED,
        MessageStatus.BLOCKED,
        MessageStatus.CANCELLED,
    }
)


class UpdateKind(StrEnum):
    UPDATE = "update"
    ALARM = "alarm"
    CORRECTION = "correction"
    CANCELLATION = "cancellation"
    SITREP = "sitrep"


class NotifyUpdate(SQLModel, table=True):
    """One facts version for one incident, sent to one or more stakeholder groups."""

    __tablename__ = "notify_updates"

    id: str = Field(primary_key=True, max_length=40)
    incident_id: str = Field(foreign_key="incidents.id", max_length=40, index=True)
    kind: str = Field(default=UpdateKind.UPDATE.value, max_length=20)
    template: str = Field(max_length=80)
    facts: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    facts_hash: str = Field(max_length=64)
    groups: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    next_update_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    author: str = Field(max_length=200)
    exercise: str | None = Field(default=None, max_length=120, index=True)
    corrects_update_id: str | None = Field(default=None, max_length=40)
    approval_required: bool = False
    approved_by: str | None = Field(default=None, max_length=200)
    approved_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )


class OutboxMessage(SQLModel, table=True):
    """One message to one recipient; the dispatcher walks its contacts primary → alternates."""

    __tablename__ = "notify_outbox"

    id: int | None = Field(default=None, primary_key=True)
    update_id: str = Field(foreign_key="notify_updates.id", max_length=40, index=True)
    incident_id: str = Field(max_length=40, index=True)
    exercise: str | None = Field(default=None, max_length=120)
    group: str = Field(max_length=40, description="stakeholder group kind, e.g. staff, media")
    group_id: str = Field(max_length=120, description="the configured group it came from")
    recipient: str = Field(max_length=120, description="person/endpoint id in the notify config")
    language: str = Field(max_length=10)
    title: str = Field(default="", max_length=300)
    body: str
    status: str = Field(default=MessageStatus.PENDING.value, max_length=20, index=True)
    contact_index: int = Field(default=0, description="0 = primary contact, 1.. = alternates")
    attempts: int = Field(default=0, description="attempts on the current contact")
    total_attempts: int = 0
    next_attempt_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False, index=True)
    )
    last_error: str | None = None
    ack_code: str | None = Field(default=None, max_length=40, unique=True)
    ack_deadline: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    acknowledged_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    acknowledged_by: str | None = Field(default=None, max_length=200)
    escalated: bool = False
    escalated_from: int | None = Field(default=None, description="outbox id not acknowledged")
    sent_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    channel: str | None = Field(default=None, max_length=20, description="channel that delivered")


class DeliveryAttempt(SQLModel, table=True):
    """Every attempt on every target, success or not (the receipts)."""

    __tablename__ = "notify_attempts"

    id: int | None = Field(default=None, primary_key=True)
    message_id: int = Field(foreign_key="notify_outbox.id", index=True)
    attempt: int
    contact_index: int
    channel: str = Field(max_length=20)
    status: str = Field(max_length=20)
    error: str | None = None
    segments: int | None = None
    elapsed: float = 0.0
    at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


class TranslationApproval(SQLModel, table=True):
    """A person approved one template translation, pinned to the file's SHA-256."""

    __tablename__ = "notify_translation_approvals"
    __table_args__ = (
        UniqueConstraint("template", "language", "sha256", name="uq_notify_translation"),
    )

    id: int | None = Field(default=None, primary_key=True)
    template: str = Field(max_length=80)
    language: str = Field(max_length=10)
    sha256: str = Field(max_length=64)
    approved_by: str = Field(max_length=200)
    approved_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )


class InboxMessage(SQLModel, table=True):
    """A message delivered to the built-in local inbox (``inbox://`` contacts, the demo).

    Written by the dispatcher in the transaction that records the attempt as ``sent``, so
    the inbox holds exactly what the receipts say was delivered.
    """

    __tablename__ = "notify_inbox"

    id: int | None = Field(default=None, primary_key=True)
    message_id: int = Field(foreign_key="notify_outbox.id", index=True)
    update_id: str = Field(max_length=40, index=True)
    incident_id: str = Field(max_length=40, index=True)
    exercise: str | None = Field(default=None, max_length=120)
    recipient: str = Field(max_length=120, index=True)
    group: str = Field(max_length=40)
    channel: str = Field(max_length=20, description="the contact's channel kind, e.g. sms")
    address: str = Field(max_length=300, description="the inbox URL of the contact")
    subject: str = Field(default="", max_length=300)
    body: str
    at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
