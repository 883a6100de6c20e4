"""Tables of the crisis log and the validation models the API speaks.

Layers follow full-stack-fastapi-template: ``XBase`` (shared fields), ``XCreate`` (input),
``XPublic`` (output), ``X(table=True)`` (storage). Tables are append-only where the log
is concerned: ``LogEntry`` and ``RawEvent`` rows are never updated or deleted by the code.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from crisis.clock import utcnow
from crisis.domain.vocabulary import (
    Impact,
    Level,
    Status,
)
from crisis.store.sqltypes import UTCDateTime

#: The partial index's predicate: the entry kinds of lessons learned.
LESSON_WHERE = "kind IN ('finding', 'follow_up', 'follow_up_update')"

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
    __table_args__ = (
        UniqueConstraint("incident_id", "seq", name="uq_log_entries_incident_seq"),
        # Lessons learned are listed across incidents (crisis.review.lessons_store).
        Index(
            "ix_log_entries_lessons",
            "kind",
            "incident_id",
            sqlite_where=text(LESSON_WHERE),
            postgresql_where=text(LESSON_WHERE),
        ),
    )

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


# --- situation reports and the access log ----------------------------------------


class SitRepStatus(StrEnum):
    DRAFT = "draft"
    APPROVED = "approved"


class SitRepFields(SQLModel):
    """What CIM and ICS-209 carry: situation, actions taken, decisions, needs, next update."""

    situation: str = Field(default="", max_length=20_000)
    actions: str = Field(default="", max_length=20_000)
    decisions: str = Field(default="", max_length=20_000)
    needs: str = Field(default="", max_length=20_000)
    next_update_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )


class SitRep(SQLModel, table=True):
    """The header of one situation report; content lives in its versions."""

    __tablename__ = "sitreps"
    __table_args__ = (UniqueConstraint("incident_id", "number", name="uq_sitreps_incident_number"),)

    id: int | None = Field(default=None, primary_key=True)
    incident_id: str = Field(foreign_key="incidents.id", max_length=40, index=True)
    number: int = Field(ge=1, description="1, 2, … per incident")
    status: str = Field(default=SitRepStatus.DRAFT.value, max_length=20, index=True)
    exercise: str | None = Field(default=None, max_length=120)
    created_by: str = Field(max_length=200)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    approved_version: int | None = None
    approved_by: str | None = Field(default=None, max_length=200)
    approved_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )


class SitRepVersion(SitRepFields, table=True):
    """One version of a report, never updated: author, time and the full content."""

    __tablename__ = "sitrep_versions"
    __table_args__ = (UniqueConstraint("sitrep_id", "version", name="uq_sitrep_versions"),)

    id: int | None = Field(default=None, primary_key=True)
    sitrep_id: int = Field(foreign_key="sitreps.id", index=True)
    version: int = Field(ge=1)
    author: str = Field(max_length=200)
    at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    note: str = Field(default="", max_length=2_000, description="Why this version (comment).")
    log_seq: int | None = Field(default=None, description="seq of the log entry recording it")


class DataAccess(SQLModel, table=True):
    """One unmasked read of personal references (``crisis.privacy``): who saw which, where,
    when and why. ``inmate_refs`` holds every kind of personal reference (historical name)."""

    __tablename__ = "data_access"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    actor: str = Field(max_length=200, index=True, description="'user:NAME'")
    role: str = Field(max_length=40)
    incident_id: str = Field(max_length=40, index=True)
    entry_ids: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    inmate_refs: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    channel: str = Field(max_length=40, description="'page', 'websocket', 'api', 'dlq'")
    need: str = Field(default="", max_length=200, description="the role's stated need to know")
