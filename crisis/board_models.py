"""Tables the board adds: situation reports (append-only versions) and the access log.

A situation report (*situasjonsrapport*) has a header row and versions that are only ever
appended; approval names one version. Reads of personal references are recorded in
``data_access`` rather than in an incident's chain, so that reading never changes the log
that is being read (a view would otherwise push a new entry to every open board).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from crisis.sqltypes import UTCDateTime, utcnow


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
