"""What a loaded playbook is: typed, validated, ready for the engine (no I/O here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final

#: Flags an entry may carry in ``data.flags`` and escalation criteria may test.
FLAGS: Final[tuple[str, ...]] = (
    "death",  # dødsfall
    "serious_injury",  # alvorlig personskade
    "staff_injured",  # ansatt skadet
    "hostage",  # gisseltaking
    "weapon",  # våpen
    "security_political",  # sikkerhetspolitisk
    "escaped",  # rømning bekreftet
    "danger_to_public",  # fare for allmennheten
    "protected_person_at_risk",  # beskyttet person i fare
    "spread_confirmed",  # smitte bekreftet
    "service_disruption",  # funksjonsevne svekket
    "data_breach",  # personopplysninger på avveie
    "evacuation_needed",  # evakuering nødvendig
    "media_storm",  # mediestorm
    "political_interest",  # politiske undertoner
)

#: Notification groups the notifiers resolve to recipients (DOMAIN.md, crisis communication).
NOTIFICATION_GROUPS: Final[tuple[str, ...]] = (
    "staff",
    "inmates",
    "ministry",
    "families",
    "media",
    "unions",
    "cooperating_actors",
)

#: Levels above the unit, in order (nærhetsprinsippet).
ESCALATION_LEVELS: Final[tuple[str, ...]] = ("region", "kdi", "jd")

#: Rule ids the engine uses besides card, contact and notification ids.
RESERVED_RULE_IDS: Final[frozenset[str]] = frozenset(
    {"owner", "severity", "notify", "escalate-region", "escalate-kdi", "escalate-jd", "proximity"}
)


@dataclass(frozen=True)
class RoleRef:
    """A daily role at the owning unit (``on_duty``) or at a body (``kdi:communication_staff``)."""

    level: str  # "unit", "region", "kdi", "jd"
    role: str

    @classmethod
    def parse(cls, text: str) -> RoleRef:
        level, _, role = text.rpartition(":")
        return cls(level or "unit", role)

    def __str__(self) -> str:
        return self.role if self.level == "unit" else f"{self.level}:{self.role}"


@dataclass(frozen=True)
class Card:
    """A *tiltakskort*: becomes one task for ``role``, due ``deadline`` after the start."""

    id: str
    title: str
    role: RoleRef
    deadline: timedelta
    checklist: tuple[str, ...] = ()
    title_en: str | None = None
    only_types: tuple[str, ...] = ()


@dataclass(frozen=True)
class Contact:
    """A cooperating actor (by kind) to contact within ``when`` (samvirkeprinsippet)."""

    id: str
    kind: str
    when: timedelta
    purpose: str
    only_types: tuple[str, ...] = ()


@dataclass(frozen=True)
class Notification:
    """One step of the notification plan handed to the notifiers."""

    id: str
    group: str
    after: timedelta
    template: str
    confirm: bool = False


@dataclass(frozen=True)
class Condition:
    """One evaluable escalation condition: ``{name: value}`` from the file."""

    name: str
    value: Any


@dataclass(frozen=True)
class Criteria:
    mode: str  # "any" or "all"
    conditions: tuple[Condition, ...]


@dataclass(frozen=True)
class Playbook:
    id: str
    title: str
    handles: tuple[str, ...]
    severity: int
    cards: tuple[Card, ...]
    escalation: dict[str, Criteria]
    impact: dict[str, int] = field(default_factory=dict)
    proximity: bool = True
    direct_to: str = "kdi"
    owner: str = "place"  # who owns a new incident: the schema's ``owner`` (ansvarsprinsippet)
    next_update: timedelta = timedelta(minutes=30)
    cooperation: tuple[Contact, ...] = ()
    notifications: tuple[Notification, ...] = ()
    title_en: str | None = None
    source: str | None = None

    def rule(self, rule_id: str) -> str:
        """The actor of every entry a rule writes: ``rule:<playbook>/<rule>``."""
        return f"rule:{self.id}/{rule_id}"


@dataclass(frozen=True)
class Library:
    """All playbooks, with at most one playbook per incident type."""

    playbooks: dict[str, Playbook]

    def for_type(self, incident_type: str) -> Playbook | None:
        for playbook in self.playbooks.values():
            if incident_type in playbook.handles:
                return playbook
        return None

    @property
    def incident_types(self) -> frozenset[str]:
        return frozenset(t for p in self.playbooks.values() for t in p.handles)

    def defaults_for(self, incident_type: str) -> tuple[int, dict[str, int]] | None:
        """(severity, impact) a new incident of this type starts with, if a playbook handles it."""
        playbook = self.for_type(incident_type)
        return None if playbook is None else (playbook.severity, dict(playbook.impact))
