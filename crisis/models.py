"""Tables of the crisis log and the validation models the API speaks.

Layers follow full-stack-fastapi-template: ``XBase`` (shared fields), ``XCreate`` (input),
``XPublic`` (output), ``X(table=True)`` (storage). Tables are append-only where the log
is concerned: ``LogEntry`` and ``RawEvent`` rows are never updated or deleted by the code.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator
from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from crisis.sqltypes import UTCDateTime, utcnow


class Level(StrEnum):
    """The daily reporting line: unit → region → KDI → JD."""

    UNIT = "unit"
    REGION = "region"
    KDI = "kdi"
    JD = "jd"


LEVEL_ORDER: tuple[Level, ...] = (Level.UNIT, Level.REGION, Level.KDI, Level.JD)


class Status(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class EntryKind(StrEnum):
    INCIDENT_OPENED = "incident_opened"
    SOURCE_EVENT = "source_event"
    OBSERVATION = "observation"
    DECISION = "decision"
    TASK = "task"
    TASK_UPDATE = "task_update"
    MESSAGE = "message"
    ESCALATION = "escalation"
    COOPERATION_CONTACT = "cooperation_contact"
    CORRECTION = "correction"
    STATUS_CHANGE = "status_change"
    SITUATION_REPORT = "situation_report"  # a sitrep version or its approval (crisis.sitreps)


#: Kinds a person may add through ``POST /api/v1/incidents/{id}/entries``; the others are
#: written by the system itself (opening, source events) or by their own endpoint (escalation).
USER_ENTRY_KINDS = frozenset(
    {
        EntryKind.OBSERVATION,
        EntryKind.DECISION,
        EntryKind.TASK,
        EntryKind.TASK_UPDATE,
        EntryKind.MESSAGE,
        EntryKind.COOPERATION_CONTACT,
        EntryKind.CORRECTION,
        EntryKind.STATUS_CHANGE,
    }
)


class TaskStatus(StrEnum):
    NOT_STARTED = "not_started"
    STARTED = "started"
    DONE = "done"


#: The values to protect (DOMAIN.md), the dimensions of an incident's impact.
IMPACT_DIMENSIONS = (
    "samfunnsoppdraget",
    "liv_og_helse",
    "menneskerettigheter",
    "okonomi",
    "ytre_miljo",
    "personvern",
    "omdomme",
)


def _check_impact(value: dict[str, int]) -> dict[str, int]:
    """Impact is scored 0-5 on the values to protect, and only on those."""
    for name, score in value.items():
        if name not in IMPACT_DIMENSIONS:
            raise ValueError(
                f"unknown impact dimension {name!r} (known: {', '.join(IMPACT_DIMENSIONS)})"
            )
        if not 0 <= score <= 5:
            raise ValueError(f"impact {name!r} is scored 0-5, not {score}")
    return value


Impact = Annotated[dict[str, int], AfterValidator(_check_impact)]


# --- incidents ------------------------------------------------------------------------


class IncidentBase(SQLModel):
    type: str = Field(max_length=80, index=True)
    title: str = Field(max_length=300)
    unit: str = Field(max_length=80, index=True, description="Owning unit (ansvarsprinsippet).")
    severity: int = Field(ge=1, le=5)
    exercise: str | None = Field(default=None, max_length=120, index=True)


class Incident(IncidentBase, table=True):
    __tablename__ = "incidents"

    id: str = Field(primary_key=True, max_length=40)
    accountable_role: str | None = Field(default=None, max_length=60)
    accountable_person: str | None = Field(default=None, max_length=200)
    impact: dict[str, int] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default=Status.OPEN.value, max_length=20, index=True)
    level: str = Field(default=Level.UNIT.value, max_length=20)
    security_political: bool = Field(default=False)
    area: str | None = Field(default=None, max_length=120)
    opened_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    closed_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    next_update_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    head_seq: int = Field(default=0, description="seq of the last entry: anchors the chain's end")
    head_hash: str = Field(default="0" * 64, max_length=64)


class IncidentCreate(IncidentBase):
    """What an API caller or a rule supplies to open an incident."""

    accountable_role: str | None = None
    accountable_person: str | None = None
    impact: Impact = Field(default_factory=dict)
    security_political: bool = False
    area: str | None = None


class IncidentPublic(IncidentBase):
    id: str
    accountable_role: str | None
    accountable_person: str | None
    impact: dict[str, int]
    status: str
    level: str
    security_political: bool
    area: str | None
    opened_at: datetime
    closed_at: datetime | None
    next_update_at: datetime | None


# --- log entries ----------------------------------------------------------------------


class LogEntry(SQLModel, table=True):
    """One link of an incident's chain. Corrections are new entries pointing at ``corrects``."""

    __tablename__ = "log_entries"
    __table_args__ = (UniqueConstraint("incident_id", "seq", name="uq_log_entries_incident_seq"),)

    id: int | None = Field(default=None, primary_key=True, description="Global feed position.")
    incident_id: str = Field(foreign_key="incidents.id", max_length=40)
    seq: int = Field(ge=1)
    kind: str = Field(max_length=40)
    at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    actor: str = Field(
        max_length=200, description="'user:NAME', 'rule:PLAYBOOK/RULE' or 'system:PART'."
    )
    text: str = Field(default="")
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    exercise: str | None = Field(default=None, max_length=120)
    corrects: int | None = Field(default=None, description="seq of the entry this one corrects.")
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class LogEntryPublic(SQLModel):
    id: int
    incident_id: str
    seq: int
    kind: str
    at: datetime
    actor: str
    text: str
    data: dict[str, Any]
    exercise: str | None
    corrects: int | None
    prev_hash: str
    hash: str


# --- evidence -------------------------------------------------------------------------


class RawEvent(SQLModel, table=True):
    """Every accepted event exactly once, keyed by (source, id): the evidence store."""

    __tablename__ = "raw_events"

    source: str = Field(primary_key=True, max_length=500)
    id: str = Field(primary_key=True, max_length=200)
    type: str = Field(max_length=200, index=True)
    unit: str | None = Field(default=None, max_length=80)
    exercise: str | None = Field(default=None, max_length=120)
    time: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    received_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    incident_id: str | None = Field(default=None, max_length=40, index=True)
    envelope: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


# --- accounts -------------------------------------------------------------------------


class Role(StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    REGION = "region"
    KDI = "kdi"
    COMMUNICATION = "communication"
    MINISTRY = "ministry"
    EXERCISE_CONTROLLER = "exercise-controller"


class UserBase(SQLModel):
    name: str = Field(max_length=80, unique=True, index=True)
    role: str = Field(max_length=40)
    unit: str | None = Field(default=None, max_length=80)
    region: str | None = Field(default=None, max_length=40)


class User(UserBase, table=True):
    __tablename__ = "users"

    id: int | None = Field(default=None, primary_key=True)
    password_hash: str
    active: bool = True
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )


class UserPublic(UserBase):
    id: int


class ApiToken(SQLModel, table=True):
    """Bearer tokens, stored as SHA-256 of a 256-bit random secret (never the secret)."""

    __tablename__ = "api_tokens"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    token_hash: str = Field(max_length=64, unique=True)
    label: str = Field(default="", max_length=120)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    revoked: bool = False
    #: None: no expiry (tokens made before expiry existed keep working).
    expires_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    last_used_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )


class WebSession(SQLModel, table=True):
    """A browser login. The cookie carries a random id; only its SHA-256 is stored, so
    deleting the row (logout, password change, disabled user) ends the session at once."""

    __tablename__ = "web_sessions"

    id_hash: str = Field(primary_key=True, max_length=64)
    user_id: int = Field(foreign_key="users.id", index=True)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    last_seen_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    expires_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))


class LoginThrottle(SQLModel, table=True):
    """Unsuccessful login attempts per account name (``user:NAME``) and client address
    (``addr:IP``); an attempt is counted before its password is checked and taken back when
    it succeeds, so concurrent attempts cannot slip past the limit."""

    __tablename__ = "login_throttle"

    key: str = Field(primary_key=True, max_length=200)
    attempts: int = 0
    last_attempt_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))
    locked_until: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
