"""Who may do what: the one table of role × action, checked by every endpoint that writes.

Scope (which units' incidents a user sees) is :mod:`crisis.accounts`; this table says what a
role may do with what it sees. The README's permission table is this table, and
``tests/domain/test_permissions.py`` walks every cell of it against the HTTP API.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Final

from crisis.domain import rules
from crisis.domain.vocabulary import EntryKind, Person, Role


class Action(StrEnum):
    READ = "read"  # incidents in scope, their timelines
    REPORT = "report"  # a staff report or a source event (alle har ansvar)
    WRITE_ENTRY = "write_entry"  # observation, task, task update, contact, correction
    DECISION = "decision"  # a decision, an owner or severity change, a status change
    COERCIVE_DECISION = "coercive_decision"  # innelåsing, utelukkelse, maktbruk, ransaking, …
    ESCALATE = "escalate"  # one level up the daily line (nærhetsprinsippet)
    NOTIFY = "notify"  # ask for a message to stakeholder groups; correct or cancel one
    APPROVE = "approve"  # the second person of the two-person rule
    APPROVE_TRANSLATION = "approve_translation"  # a template translation for inmates
    EXERCISE = "exercise"  # open an exercise incident, inject exercise events
    RECORD_LESSON = "record_lesson"  # a finding, a follow-up action or its update (review)
    RUN_EXERCISE = "run_exercise"  # create, start, pause, end a scripted exercise; participants


_ALL: Final = frozenset(Action)
_RESPONDER: Final = frozenset(
    {
        Action.READ,
        Action.REPORT,
        Action.WRITE_ENTRY,
        Action.DECISION,
        Action.COERCIVE_DECISION,
        Action.ESCALATE,
        Action.NOTIFY,
        Action.APPROVE,
        Action.EXERCISE,
        Action.RECORD_LESSON,
    }
)

#: Role → what it may do (within its scope). Coercive measures are decided where the inmate
#: is (the unit, its region); KDI leads the service and approves translations; the
#: communication staff speak for it but decide nothing; the ministry reads. Lessons learned
#: are recorded by those who lead the response, and by exercise controllers, who evaluate
#: the exercises their scope holds. Scripted exercises are run by controllers and admins only.
PERMISSIONS: Final[Mapping[Role, frozenset[Action]]] = {
    Role.ADMIN: _ALL,
    Role.OPERATOR: _RESPONDER,
    Role.REGION: _RESPONDER,
    Role.KDI: (_RESPONDER - {Action.COERCIVE_DECISION}) | {Action.APPROVE_TRANSLATION},
    Role.COMMUNICATION: frozenset(
        {Action.READ, Action.REPORT, Action.WRITE_ENTRY, Action.NOTIFY, Action.APPROVE}
    ),
    Role.MINISTRY: frozenset({Action.READ}),
    Role.EXERCISE_CONTROLLER: frozenset(
        {
            Action.READ,
            Action.REPORT,
            Action.WRITE_ENTRY,
            Action.EXERCISE,
            Action.RECORD_LESSON,
            Action.RUN_EXERCISE,
        }
    ),
}


class Forbidden(PermissionError):
    """A role asked for an action outside its row of the table."""

    def __init__(self, role: str, action: Action) -> None:
        self.role, self.action = role, action
        super().__init__(
            f"rollen {role} har ikke tilgang til {action.value} / "
            f"the role {role} may not {action.value}"
        )


def allowed(role: str, action: Action) -> bool:
    try:
        return action in PERMISSIONS[Role(role)]
    except ValueError:
        return False


def require(user: Person, action: Action) -> None:
    """Raise :class:`Forbidden` unless the user's role may take ``action``."""
    if not allowed(user.role, action):
        raise Forbidden(user.role, action)


def entry_action(kind: str, data: Mapping[str, Any]) -> Action:
    """The action a person takes by adding an entry of ``kind`` with ``data``."""
    if rules.is_coercive(data):
        return Action.COERCIVE_DECISION
    if kind in (EntryKind.DECISION, EntryKind.STATUS_CHANGE) or "new_owner" in data:
        return Action.DECISION
    return Action.WRITE_ENTRY
