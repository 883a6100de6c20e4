"""Tables of the stream worker: dead letters, correlation state, change-feed positions.

They sit in the domain core (not in ``streams/``) because the web app reads dead letters
(:mod:`web.dlq`) and web must not import streams; only the worker writes them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, Text
from sqlmodel import Field, SQLModel

from crisis.clock import utcnow
from crisis.store.sqltypes import UTCDateTime


class DeadLetter(SQLModel, table=True):
    """An event refused (by the worker, a bridge, a producer), with the reason; the raw bytes
    are kept as text (only a prefix of a record too large to publish)."""

    __tablename__ = "dead_letters"
    #: The outbox asks whether an event was dead-lettered by (source, id) (crisis.producer).
    __table_args__ = (Index("ix_dead_letters_source_event_id", "source", "event_id"),)

    id: int | None = Field(default=None, primary_key=True)
    source: str | None = Field(default=None, max_length=500)
    event_id: str | None = Field(default=None, max_length=200)
    type: str | None = Field(default=None, max_length=200, index=True)
    unit: str | None = Field(default=None, max_length=80, index=True)
    reason: str = Field(sa_column=Column(Text, nullable=False))
    errors: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    raw: str = Field(default="", sa_column=Column(Text, nullable=False))
    topic: str | None = Field(default=None, max_length=200)
    kafka_partition: int | None = None
    kafka_offset: int | None = None
    fingerprint: str = Field(
        max_length=64,
        unique=True,
        description="SHA-256 of topic, partition, offset and raw bytes: a redelivery is one row.",
    )
    received_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False, index=True)
    )
    origin: str | None = Field(
        default=None,
        max_length=80,
        description="Who refused it: 'worker', 'bridge:mqtt', 'bridge:media', 'ingest'.",
    )


class DeadLetterPublic(SQLModel):
    id: int
    source: str | None
    event_id: str | None
    type: str | None
    unit: str | None
    reason: str
    errors: list[dict[str, Any]]
    raw: str
    received_at: datetime
    origin: str = Field(
        description="Who refused it: 'worker' (the ingest worker's validation), 'bridge:mqtt',"
        " 'bridge:media' (a bridge's reject), 'ingest' (the web ingest's producer); a record too"
        " large or otherwise unpublishable comes from the producer that could not send it."
    )


class CorrelationState(SQLModel, table=True):
    """One row of :mod:`crisis.correlation` state (a correlation key, a source's storm window,
    a gateway's last heartbeat, …). ``due`` (epoch seconds) is when the timer must look at it."""

    __tablename__ = "correlation_state"

    key: str = Field(primary_key=True, max_length=700)
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    due: float | None = Field(default=None, index=True)


class FeedPosition(SQLModel, table=True):
    """How far a change-feed relay has published (``log_entries.id``), kept durably."""

    __tablename__ = "feed_positions"

    name: str = Field(primary_key=True, max_length=80)
    position: int = Field(default=0)
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
