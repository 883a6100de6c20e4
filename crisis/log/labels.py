"""Human labels for the codes the log stores, in bokmål and English.

The log keeps codes (``to_contact``, ``region:on_duty``, ``fire``, ``unit``); a person under
pressure, or a ministry reader of a situation report, reads words. One table for the board,
the situation-report draft and anything else that shows a code; an unknown code is shown
as it is, so nothing is hidden.
"""

from __future__ import annotations

import re
from typing import Any, Final

from crisis.sources.incident_types import INCIDENT_TYPE_LABELS

Pair = tuple[str, str]

LEVELS: Final[dict[str, Pair]] = {
    "unit": ("enhetsnivå", "unit level"),
    "region": ("regionnivå", "regional level"),
    "kdi": ("direktoratsnivå (KDI)", "directorate level (KDI)"),
    "jd": ("departementsnivå (JD)", "ministry level (JD)"),
}

#: Who holds a role, when a role reference names a level (``region:on_duty``).
BODIES: Final[dict[str, Pair]] = {
    "unit": ("enhetens", "the unit's"),
    "region": ("regionens", "the region's"),
    "kdi": ("KDIs", "KDI's"),
    "jd": ("departementets", "the ministry's"),
}

ROLES: Final[dict[str, Pair]] = {
    "leader": ("leder", "leader"),
    "deputy": ("stedfortreder", "deputy"),
    "on_duty": ("vakthavende", "on-duty officer"),
    "safety_representative": ("verneombud", "safety representative"),
    "union_representative": ("tillitsvalgt", "union representative"),
    "family_liaison": ("pårørendeliaison", "family liaison"),
    "media_contact_primary": ("mediekontakt", "media contact"),
    "media_contact_alternate": ("mediekontakt (vara)", "media contact (alternate)"),
    "communication_staff": ("kommunikasjonsstab", "communication staff"),
}

ACTOR_KINDS: Final[dict[str, Pair]] = {
    "police": ("politiet", "the police"),
    "pst": ("PST", "the security service (PST)"),
    "health": ("helsetjenesten", "health services"),
    "amk": ("AMK (medisinsk nødmeldetjeneste)", "emergency medical dispatch (AMK)"),
    "fire": ("brannvesenet", "the fire service"),
    "municipality": ("kommunen", "the municipality"),
    "statsbygg": ("Statsbygg", "Statsbygg (building owner)"),
    "nsm": ("NSM", "the national security authority (NSM)"),
    "dsb": ("DSB", "the directorate for civil protection (DSB)"),
    "statsforvalteren": ("Statsforvalteren", "the county governor"),
}

CONTACT_STATUSES: Final[dict[str, Pair]] = {
    "to_contact": ("skal kontaktes", "to be contacted"),
    "planned": ("planlagt", "planned"),
    "contacted": ("kontaktet", "contacted"),
    "acknowledged": ("bekreftet", "acknowledged"),
}

TASK_STATUSES: Final[dict[str, Pair]] = {
    "not_started": ("ikke startet", "not started"),
    "started": ("startet", "started"),
    "done": ("utført", "done"),
}

DELIVERY_STATUSES: Final[dict[str, Pair]] = {
    "queued": ("i kø", "queued"),
    "sent": ("sendt", "sent"),
    "failed": ("feilet", "failed"),
    "timed_out": ("tidsavbrudd", "timed out"),
    "held": ("holdt tilbake", "held"),
    "acknowledged": ("bekreftet", "acknowledged"),
    "blocked": ("blokkert (øvelse)", "blocked (exercise)"),
}

GROUPS: Final[dict[str, Pair]] = {
    "staff": ("ansatte", "staff"),
    "leaders": ("ledere", "leaders"),
    "safety": ("verneombud", "safety representatives"),
    "unions": ("tillitsvalgte", "unions"),
    "inmates": ("innsatte", "inmates"),
    "ministry": ("departementet (JD)", "the ministry (JD)"),
    "families": ("pårørende", "families"),
    "media": ("media", "media"),
    "public": ("publikum", "the public"),
    "cooperating": ("samvirkeaktører", "cooperating actors"),
}

TABLES: Final[dict[str, dict[str, Pair]]] = {
    "level": LEVELS,
    "role": ROLES,
    "actor_kind": ACTOR_KINDS,
    "contact": CONTACT_STATUSES,
    "task": TASK_STATUSES,
    "delivery": DELIVERY_STATUSES,
    "group": GROUPS,
    "type": INCIDENT_TYPE_LABELS,
}


def _pick(pair: Pair, lang: str) -> str:
    return pair[1 if lang == "en" else 0]


def label(table: str, code: str | None, lang: str = "nb") -> str:
    """The word for ``code`` in ``table`` (see ``TABLES``); the code itself when unknown."""
    if not code:
        return ""
    if table == "role":
        return role(code, lang)
    pair = TABLES.get(table, {}).get(code)
    return _pick(pair, lang) if pair else code


def role(ref: str | None, lang: str = "nb") -> str:
    """A role reference as said aloud: ``region:on_duty`` → "regionens vakthavende"."""
    if not ref:
        return ""
    level, _, name = ref.rpartition(":")
    pair = ROLES.get(name)
    word = _pick(pair, lang) if pair else name
    if level and level in BODIES:
        return f"{_pick(BODIES[level], lang)} {word}"
    return word if not level else f"{level}: {word}"


_LEVEL = "|".join(LEVELS)
_ROLE_REF = r"(?:(?:unit|region|kdi|jd):)?(?:" + "|".join(ROLES) + ")"
_PATTERNS: Final[tuple[tuple[re.Pattern[str], Any], ...]] = (
    (
        re.compile(rf"\bfra ({_LEVEL}) til ({_LEVEL})\b"),
        lambda m: f"fra {label('level', m[1])} til {label('level', m[2])}",
    ),
    (re.compile(rf"\bpå nivå ({_LEVEL})\b"), lambda m: f"på {label('level', m[1])}"),
    (re.compile(rf"\bnivå ({_LEVEL})\b"), lambda m: label("level", m[1])),
    (re.compile(rf"\bansvarlig ({_ROLE_REF})\b"), lambda m: f"ansvarlig {role(m[1])}"),
    (
        re.compile(r"\((" + _ROLE_REF + "|" + "|".join(ACTOR_KINDS) + r")\)"),
        lambda m: f"({role(m[1]) if m[1] not in ACTOR_KINDS else label('actor_kind', m[1])})",
    ),
    (
        re.compile(r"\(status: (" + "|".join(TASK_STATUSES) + r")\)"),
        lambda m: f"(status: {label('task', m[1])})",
    ),
    (
        re.compile(r"\bType: (\w+)\b"),
        lambda m: f"Type: {label('type', m[1])}",
    ),
    (
        re.compile(r"\bav typen «?(" + "|".join(ACTOR_KINDS) + r")»?"),
        lambda m: f"av typen «{label('actor_kind', m[1])}»",
    ),
)


_PATTERNS_EN: Final[tuple[tuple[re.Pattern[str], Any], ...]] = (
    (
        re.compile(rf"\b(?:at )?level ({_LEVEL})\b"),
        lambda m: (
            f"at {label('level', m[1], 'en')}"
            if m[0].startswith("at ")
            else label("level", m[1], "en")
        ),
    ),
    (
        re.compile(r"\((" + _ROLE_REF + r")\)"),
        lambda m: f"({role(m[1], 'en')})",
    ),
    (
        re.compile(r"\(status: (" + "|".join(TASK_STATUSES) + r")\)"),
        lambda m: f"(status: {label('task', m[1], 'en')})",
    ),
    (
        re.compile(r"\bof kind '(" + "|".join(ACTOR_KINDS) + r")'"),
        lambda m: f"of kind '{label('actor_kind', m[1], 'en')}'",
    ),
)


def humanise(text: str, lang: str = "nb") -> str:
    """A stored text with the codes it names said in words (the log keeps the code: entries
    are hash-chained and never rewritten, so the reading is done where it is shown). The
    log's texts are bokmål; ``lang="en"`` reads the English messages of the violations."""
    for pattern, repl in _PATTERNS_EN if lang == "en" else _PATTERNS:
        text = pattern.sub(repl, text)
    return text
