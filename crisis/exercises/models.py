"""Exercise tables: the exercise, the state of each scripted inject, its participants and the
controller's observations. The scenario text run is kept whole in ``Exercise.scenario_yaml``;
the packages above parse it (``playbooks.exercises.scenario``)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from crisis.clock import utcnow
from crisis.store.sqltypes import UTCDateTime

#: An exercise id as events carry it (the ``exercise`` extension attribute).
EXERCISE_ID_PATTERN = r"^[a-z0-9][a-z0-9-]*$"


class ExerciseState(StrEnum):
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    ENDED = "ended"


class InjectState(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    SKIPPED = "skipped"


class Exercise(SQLModel, table=True):
    __tablename__ = "exercises"

    id: str = Field(primary_key=True, max_length=120)
    scenario_id: str = Field(max_length=120, index=True)
    title: str = Field(max_length=300)
    scenario_yaml: str = Field(sa_column=Column(Text, nullable=False))
    speed: float = 1.0
    #: The scenario's length in scenario seconds; None: it runs until ended.
    duration_seconds: float | None = None
    state: str = Field(default=ExerciseState.CREATED.value, max_length=20, index=True)
    created_by: str = Field(max_length=200)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    started_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    paused_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    paused_seconds: float = 0.0
    #: The ended pauses, ``[start, end]`` as UTC ISO strings: an action's scenario time
    #: leaves out only the pauses before it.
    pauses: list[Any] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    ended_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    ended_by: str | None = Field(default=None, max_length=200)
    end_reason: str | None = Field(default=None, max_length=500)


class ExerciseInjectState(SQLModel, table=True):
    __tablename__ = "exercise_injects"
    __table_args__ = (UniqueConstraint("exercise_id", "inject_id"),)

    id: int | None = Field(default=None, primary_key=True)
    exercise_id: str = Field(foreign_key="exercises.id", max_length=120, index=True)
    inject_id: str = Field(max_length=120)
    #: Scenario seconds from the start; a manual inject has the offset it was fired at.
    due_offset_seconds: float
    type: str = Field(default="", max_length=20)
    state: str = Field(default=InjectState.PENDING.value, max_length=20)
    sent_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    manual: bool = False
    summary: str = Field(default="", sa_column=Column(Text, nullable=False))


class ExerciseParticipant(SQLModel, table=True):
    __tablename__ = "exercise_participants"
    __table_args__ = (UniqueConstraint("exercise_id", "person_id"),)

    id: int | None = Field(default=None, primary_key=True)
    exercise_id: str = Field(foreign_key="exercises.id", max_length=120, index=True)
    #: A person id of the recipients file (``person``) or a user account name (``account``).
    person_id: str = Field(max_length=200)
    kind: str = Field(default="person", max_length=20)
    added_by: str = Field(max_length=200)
    added_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )


class ExerciseObservation(SQLModel, table=True):
    __tablename__ = "exercise_observations"

    id: int | None = Field(default=None, primary_key=True)
    exercise_id: str = Field(foreign_key="exercises.id", max_length=120, index=True)
    at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    actor: str = Field(max_length=200)
    text: str = Field(sa_column=Column(Text, nullable=False))
