"""The principles as pure checks, shared by the API, the stream worker and the playbooks.

Each check returns a list of :class:`Violation`; empty means allowed. Keeping them pure
means the same rule holds whichever way an entry arrives.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from crisis.models import LEVEL_ORDER, EntryKind, Level, TaskStatus

#: Coercive or restrictive measures (DOMAIN.md, "Hjemmel og notoritet"). A decision on one of
#: these needs a legal basis, a proportionality assessment and the alternatives considered.
COERCIVE_MEASURES = frozenset(
    {
        "innelasing",  # lock-down / locking inmates in their cells
        "utelukkelse",  # exclusion from company
        "maktbruk",  # use of force
        "tvangsmidler",  # restraints
        "sikkerhetscelle",  # security cell
        "ransaking",  # search of cell or premises
        "kroppsvisitasjon",  # body search
        "besoksforbud",  # ban on visits
        "isolasjon",  # isolation
    }
)

COERCIVE_REQUIRED_FIELDS = ("legal_basis", "proportionality", "alternatives")


@dataclass(frozen=True)
class Violation:
    """One broken rule: which field, what is wrong, and the principle it protects."""

    field: str
    message: str
    principle: str | None = None

    def as_error(self) -> dict[str, Any]:
        out: dict[str, Any] = {"field": self.field, "message": self.message}
        if self.principle:
            out["principle"] = self.principle
        return out


def _blank(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, list | tuple):
        return not any(not _blank(v) for v in value)
    return False


def is_coercive(data: Mapping[str, Any]) -> bool:
    measure = data.get("measure")
    return bool(data.get("coercive")) or (
        isinstance(measure, str) and measure.strip().lower() in COERCIVE_MEASURES
    )


def check_decision(data: Mapping[str, Any]) -> list[Violation]:
    """A coercive decision is recorded only with legal basis, proportionality and alternatives."""
    if not is_coercive(data):
        return []
    return [
        Violation(
            field=name,
            message=f"a decision on a coercive or restrictive measure needs '{name}' "
            "(hjemmel og notoritet: legal basis, proportionality, alternatives considered)",
            principle="hjemmel og notoritet",
        )
        for name in COERCIVE_REQUIRED_FIELDS
        if _blank(data.get(name))
    ]


def check_task(data: Mapping[str, Any]) -> list[Violation]:
    """Every task has a responsible role (ansvarsprinsippet) and a title."""
    out = []
    if _blank(data.get("title")):
        out.append(Violation("title", "a task needs a title"))
    if _blank(data.get("responsible_role")):
        out.append(
            Violation(
                "responsible_role",
                "a task needs a responsible role",
                principle="ansvarsprinsippet",
            )
        )
    return out


def check_task_update(data: Mapping[str, Any], known_tasks: set[int]) -> list[Violation]:
    out = []
    task = data.get("task")
    if not isinstance(task, int) or task not in known_tasks:
        out.append(Violation("task", f"no task entry with seq {task!r} in this incident"))
    status = data.get("status")
    if status is not None and status not in {s.value for s in TaskStatus}:
        out.append(
            Violation("status", f"unknown task status {status!r} (not_started, started, done)")
        )
    return out


def check_escalation(*, current: str, target: str, security_political: bool) -> list[Violation]:
    """Escalate one level at a time (nærhetsprinsippet) unless the crisis is security-political."""
    try:
        cur = LEVEL_ORDER.index(Level(current))
        tgt = LEVEL_ORDER.index(Level(target))
    except ValueError:
        return [Violation("to", f"unknown level {target!r} (unit, region, kdi, jd)")]
    if tgt == cur:
        return [Violation("to", f"the incident is already handled at level {target!r}")]
    if tgt < cur:
        return [
            Violation(
                "to",
                "escalation goes upwards; hand an incident back down with a decision entry",
            )
        ]
    if tgt - cur > 1 and not security_political:
        skipped = ", ".join(level.value for level in LEVEL_ORDER[cur + 1 : tgt])
        return [
            Violation(
                "to",
                f"escalating from {current!r} to {target!r} skips {skipped}: crises are handled at "
                "the lowest possible level and escalated one level at a time "
                "(nærhetsprinsippet); only security-political incidents go straight to KDI/JD",
                principle="nærhetsprinsippet",
            )
        ]
    return []


def check_owner_change(kind: str, data: Mapping[str, Any]) -> list[Violation]:
    """Ownership changes only through a logged decision (ansvarsprinsippet)."""
    if "new_owner" in data and kind != EntryKind.DECISION:
        return [
            Violation(
                "new_owner",
                "the owning unit changes only through a decision entry (ansvarsprinsippet)",
                principle="ansvarsprinsippet",
            )
        ]
    return []


def check_correction(corrects: int | None, existing_seqs: int) -> list[Violation]:
    if corrects is None:
        return [Violation("corrects", "a correction names the seq of the entry it corrects")]
    if not 1 <= corrects <= existing_seqs:
        return [Violation("corrects", f"no entry with seq {corrects} in this incident")]
    return []
