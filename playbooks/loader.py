"""Load and validate playbooks: JSON Schema, then cross-checks against the organisation model.

Errors name file, line and field (``hostage.yaml:31: cards[2].role: unknown role …``). A
playbook that names a role the organisation does not have fails here, at load, not in the
middle of a crisis (*likhetsprinsippet*).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from crisis.domain import rules
from crisis.domain.organisation import (
    BODY_ROLES,
    COOPERATING_ACTOR_KINDS,
    DAILY_ROLES,
    Organisation,
)
from crisis.domain.vocabulary import IMPACT_DIMENSIONS
from crisis.sources.incident_types import INCIDENT_TYPE_LABELS
from crisis.yamlsource import (
    JsonPath,
    Problem,
    SourceError,
    duplicate_keys,
    line_of,
    parse,
    raise_if_any,
    schema_problems,
    schema_validator,
)
from playbooks.duration import parse_duration
from playbooks.model import (
    FLAGS,
    RESERVED_RULE_IDS,
    Card,
    Condition,
    Contact,
    Criteria,
    Library,
    Notification,
    Playbook,
    RoleRef,
)

_HERE = Path(__file__).resolve().parent


class PlaybookError(SourceError):
    """A playbook problem pinned to file, line and field (all problems in ``problems``)."""


def library_path() -> Path:
    """The shipped playbooks (``playbooks/library``)."""
    return _HERE / "library"


def schema_path() -> Path:
    return _HERE / "playbook.schema.json"


@lru_cache(maxsize=1)
def _validator() -> Any:
    return schema_validator(json.loads(schema_path().read_text(encoding="utf-8")))


# -- cross-checks ------------------------------------------------------------------------


def _role_problem(text: str, org: Organisation) -> str | None:
    """Why ``text`` is not a role this organisation has (likhetsprinsippet), or None."""
    ref = RoleRef.parse(text)
    if ref.level == "unit":
        if ref.role not in DAILY_ROLES:
            return (
                f"unknown role {ref.role!r}: playbooks may only name the daily roles of a unit "
                f"({', '.join(DAILY_ROLES)}) or of region/KDI/JD as 'region:ROLE', 'kdi:ROLE', "
                "'jd:ROLE' (likhetsprinsippet: the crisis organisation is the daily one)"
            )
        if not any(unit.has_role(ref.role) for unit in org.units.values()):
            return (
                f"no unit of the organisation has anyone in role {ref.role!r} (likhetsprinsippet)"
            )
        return None
    if ref.level not in ("region", "kdi", "jd"):
        return f"unknown level {ref.level!r} in role {text!r} (use region:, kdi: or jd:)"
    if ref.role not in BODY_ROLES:
        return (
            f"unknown role {ref.role!r} at {ref.level}: the organisation's roles there are "
            f"{', '.join(BODY_ROLES)} (likhetsprinsippet)"
        )
    if ref.level == "region":
        lacking = [r.id for r in org.regions.values() if not r.has_role(ref.role)]
        if lacking:
            return (
                f"role {ref.role!r} is held by nobody in region {', '.join(lacking)} "
                "(likhetsprinsippet)"
            )
        return None
    body = org.directorate if ref.level == "kdi" else org.ministry
    if not body.has_role(ref.role):
        return f"role {ref.role!r} is held by nobody at {ref.level.upper()} (likhetsprinsippet)"
    return None


def _duration(raw: Any, path: JsonPath, root: yaml.Node | None, out: list[Problem]) -> None:
    try:
        parse_duration(raw)
    except ValueError as exc:
        out.append((path, line_of(root, path), str(exc)))


def _cross_problems(
    data: dict[str, Any], root: yaml.Node | None, org: Organisation
) -> Iterator[Problem]:
    out: list[Problem] = []
    handles = data["handles"]
    for i, kind in enumerate(handles):
        if kind not in INCIDENT_TYPE_LABELS:
            path: JsonPath = ("handles", i)
            out.append(
                (
                    path,
                    line_of(root, path),
                    f"unknown incident type {kind!r} (known: {', '.join(INCIDENT_TYPE_LABELS)})",
                )
            )
    seen: dict[str, int | None] = {}
    for section in ("cards", "cooperation"):
        for i, item in enumerate(data.get(section, [])):
            path = (section, i, "id")
            line = line_of(root, path)
            if item["id"] in RESERVED_RULE_IDS:
                out.append((path, line, f"{item['id']!r} is reserved for the engine's own rules"))
            elif item["id"] in seen:
                out.append(
                    (
                        path,
                        line,
                        f"duplicate rule id {item['id']!r} (first at line {seen[item['id']]})",
                    )
                )
            else:
                seen[item["id"]] = line
            for j, kind in enumerate(item.get("only_types", [])):
                if kind not in handles:
                    p: JsonPath = (section, i, "only_types", j)
                    out.append(
                        (
                            p,
                            line_of(root, p),
                            f"{kind!r} is not among the types this playbook handles",
                        )
                    )
    for i, card in enumerate(data["cards"]):
        problem = _role_problem(card["role"], org)
        if problem:
            out.append((("cards", i, "role"), line_of(root, ("cards", i, "role")), problem))
        _duration(card["deadline"], ("cards", i, "deadline"), root, out)
    for i, contact in enumerate(data.get("cooperation", [])):
        if contact["kind"] not in COOPERATING_ACTOR_KINDS:
            path = ("cooperation", i, "kind")
            out.append(
                (
                    path,
                    line_of(root, path),
                    f"unknown cooperating actor kind {contact['kind']!r} "
                    f"(known: {', '.join(COOPERATING_ACTOR_KINDS)})",
                )
            )
        _duration(contact["when"], ("cooperation", i, "when"), root, out)
    plan = []
    note_ids: dict[str, int | None] = {}
    for i, note in enumerate(data.get("notifications", [])):
        id_path: JsonPath = ("notifications", i, "id")
        if note["id"] in note_ids:
            out.append(
                (id_path, line_of(root, id_path), f"duplicate notification id {note['id']!r}")
            )
        note_ids[note["id"]] = line_of(root, id_path)
        _duration(note["after"], ("notifications", i, "after"), root, out)
        try:
            plan.append(
                {"group": note["group"], "after": parse_duration(note["after"]), "index": i}
            )
        except ValueError:
            pass
    for violation in rules.check_notification_order(plan):
        index = violation.field
        path = ("notifications", int(index), "after") if index.isdigit() else ("notifications",)
        out.append((path, line_of(root, path), violation.message))
    if "next_update" in data:
        _duration(data["next_update"], ("next_update",), root, out)
    if "direct_to" in data and data.get("proximity", True):
        out.append(
            (
                ("direct_to",),
                line_of(root, ("direct_to",)),
                "direct_to applies only with proximity: false",
            )
        )
    for level, criteria in data["escalation"].items():
        for mode, conditions in criteria.items():
            for i, condition in enumerate(conditions):
                [(name, value)] = condition.items()
                path = ("escalation", level, mode, i, name)
                if name == "flag" and value not in FLAGS:
                    out.append(
                        (
                            path,
                            line_of(root, path),
                            f"unknown flag {value!r} (known: {', '.join(FLAGS)})",
                        )
                    )
                elif name == "open_longer_than":
                    _duration(value, path, root, out)
                elif name == "impact_at_least":
                    for dim in value:
                        if dim not in IMPACT_DIMENSIONS:
                            out.append(
                                (
                                    (*path, dim),
                                    line_of(root, (*path, dim), at_key=True),
                                    f"unknown impact dimension {dim!r} "
                                    f"(known: {', '.join(IMPACT_DIMENSIONS)})",
                                )
                            )
    yield from out


# -- building ----------------------------------------------------------------------------


def _build(data: dict[str, Any], source: str) -> Playbook:
    escalation = {
        level: Criteria(
            mode=mode,
            conditions=tuple(Condition(*next(iter(c.items()))) for c in conditions),
        )
        for level, criteria in data["escalation"].items()
        for mode, conditions in criteria.items()
    }
    return Playbook(
        id=data["id"],
        title=data["title"],
        title_en=data.get("title_en"),
        handles=tuple(data["handles"]),
        severity=data["severity"],
        impact=dict(data.get("impact", {})),
        proximity=data.get("proximity", True),
        direct_to=data.get("direct_to", "kdi"),
        owner=data.get("owner", "place"),
        next_update=parse_duration(data.get("next_update", "30m")),
        cards=tuple(
            Card(
                id=c["id"],
                title=c["title"],
                title_en=c.get("title_en"),
                role=RoleRef.parse(c["role"]),
                deadline=parse_duration(c["deadline"]),
                checklist=tuple(c.get("checklist", ())),
                only_types=tuple(c.get("only_types", ())),
            )
            for c in data["cards"]
        ),
        cooperation=tuple(
            Contact(
                id=c["id"],
                kind=c["kind"],
                when=parse_duration(c["when"]),
                purpose=c["purpose"],
                only_types=tuple(c.get("only_types", ())),
            )
            for c in data.get("cooperation", [])
        ),
        notifications=tuple(
            Notification(
                id=n["id"],
                group=n["group"],
                after=parse_duration(n["after"]),
                template=n["template"],
                confirm=bool(n.get("confirm", False)),
            )
            for n in data.get("notifications", [])
        ),
        escalation=escalation,
        source=source,
    )


def load_playbook(path: str | Path, *, org: Organisation) -> Playbook:
    """Load one playbook file; PlaybookError naming file, line and field on any problem."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlaybookError("playbook file not found", path=source) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PlaybookError(f"cannot read playbook file: {exc}", path=source) from None
    root, data = parse(source, text, PlaybookError)
    if root is None:
        raise PlaybookError("file is empty; expected a playbook", path=source, line=1)
    raise_if_any(source, list(duplicate_keys(root)), PlaybookError)
    raise_if_any(source, list(schema_problems(_validator(), data, root)), PlaybookError)
    raise_if_any(source, list(_cross_problems(data, root, org)), PlaybookError)
    return _build(data, source)


def load_library(directory: str | Path | None = None, *, org: Organisation) -> Library:
    """Every ``*.yaml`` in ``directory`` (None: the shipped library); one playbook per type."""
    folder = Path(directory) if directory is not None else library_path()
    if not folder.is_dir():
        raise PlaybookError("playbook directory not found", path=str(folder))
    playbooks: dict[str, Playbook] = {}
    owner_of: dict[str, Playbook] = {}
    problems: list[PlaybookError] = []
    for file in sorted(folder.glob("*.yaml")):
        try:
            playbook = load_playbook(file, org=org)
        except PlaybookError as exc:
            problems.extend(exc.problems)  # type: ignore[arg-type]
            continue
        if playbook.id in playbooks:
            problems.append(
                PlaybookError(
                    f"duplicate playbook id {playbook.id!r} "
                    f"(also in {playbooks[playbook.id].source})",
                    path=str(file),
                    field="id",
                )
            )
            continue
        for kind in playbook.handles:
            if kind in owner_of:
                problems.append(
                    PlaybookError(
                        f"incident type {kind!r} is already handled by playbook "
                        f"{owner_of[kind].id!r} ({owner_of[kind].source})",
                        path=str(file),
                        field="handles",
                    )
                )
            owner_of[kind] = playbook
        playbooks[playbook.id] = playbook
    if problems:
        first = problems[0]
        first.problems = tuple(problems)
        raise first
    if not playbooks:
        raise PlaybookError("no playbooks (*.yaml) in the directory", path=str(folder))
    return Library(playbooks=playbooks)
