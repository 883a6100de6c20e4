"""The words of the domain: reporting levels, incident status, entry kinds, task states,
roles and the values to protect. Plain enums and checks, no storage."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Protocol

from pydantic import AfterValidator


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
    FINDING = "finding"  # lessons learned: what the review found (crisis.review.lessons)
    FOLLOW_UP = "follow_up"  # lessons learned: an action with an owner, a due date, a status
    FOLLOW_UP_UPDATE = "follow_up_update"  # a change of a follow-up's status, owner or due date


#: The seq of an incident's opening entry (its first title, severity and area); a correction
#: naming it may set those (``crisis.log.projection.corrected_fields``).
OPENING_SEQ = 1


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


#: The lessons-learned kinds: written by their own endpoints, on an open or a closed incident.
LESSON_KINDS = frozenset({EntryKind.FINDING, EntryKind.FOLLOW_UP, EntryKind.FOLLOW_UP_UPDATE})


class FollowUpStatus(StrEnum):
    OPEN = "open"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    DROPPED = "dropped"


#: A follow-up in one of these states is settled: never overdue.
SETTLED_FOLLOW_UPS = frozenset({FollowUpStatus.DONE, FollowUpStatus.DROPPED})


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


class Role(StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    REGION = "region"
    KDI = "kdi"
    COMMUNICATION = "communication"
    MINISTRY = "ministry"
    EXERCISE_CONTROLLER = "exercise-controller"


class Person(Protocol):
    """Whoever acts: what the rules read of an account (``crisis.accounts.models.User``)."""

    @property
    def name(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def unit(self) -> str | None: ...
    @property
    def region(self) -> str | None: ...
