"""The organisation model: who owns what, and who is accountable.

The preparedness principles bind everything the system does to the daily
organisation: every incident is owned by a unit (*ansvarsprinsippet*), crisis
roles are the daily roles (*likhetsprinsippet*: the unit leader leads, the
on-duty officer acts until then) and reporting follows unit -> region -> KDI
-> JD.  This module is the single source of truth for that organisation.

The file is edited by hand, so the loader reports every problem with the file,
the 1-based line and the field path (``organisation.yaml:42: units[3].region:
unknown region 'midt' ...``) instead of a bare traceback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Final, Literal, TypeVar, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from crisis.yamlsource import (
    JsonPath,
    SourceError,
    duplicate_keys,
    line_of,
    parse,
    raise_if_any,
    schema_problems,
    schema_validator,
)

__all__ = [
    "ACCOUNTABLE_ROLES",
    "BODY_ROLES",
    "COOPERATING_ACTOR_KINDS",
    "DAILY_ROLES",
    "REGION_IDS",
    "SECURITY_LEVELS",
    "UNIT_KINDS",
    "Body",
    "CooperatingActor",
    "CooperatingActorKind",
    "Department",
    "Organisation",
    "OrganisationError",
    "Person",
    "Region",
    "SecurityLevel",
    "Unit",
    "UnitKind",
    "demo_organisation_path",
    "load_organisation",
    "organisation_schema",
    "organisation_schema_path",
]

# --------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------

#: Daily roles of a unit.  Playbooks may only bind crisis roles to these.
DAILY_ROLES: Final[tuple[str, ...]] = (
    "leader",  # fengselsleder / friomsorgsleder
    "deputy",  # nestleder / assisterende leder
    "on_duty",  # vakthavende
    "safety_representative",  # verneombud
    "union_representative",  # tillitsvalgt
    "family_liaison",  # pårørendeliaison
    "media_contact_primary",
    "media_contact_alternate",
)

#: Roles at JD, KDI and the regions (KDI owns service-wide communication).
BODY_ROLES: Final[tuple[str, ...]] = (
    "leader",
    "deputy",
    "on_duty",
    "communication_staff",  # kommunikasjonsstaben
    "media_contact_primary",
    "media_contact_alternate",
    "family_liaison",
)

#: Who is accountable, in order: the leader leads, else the deputy, and the
#: on-duty officer acts until one of them takes over (likhetsprinsippet).
ACCOUNTABLE_ROLES: Final[tuple[str, ...]] = ("leader", "deputy", "on_duty")

CooperatingActorKind = Literal[
    "police",
    "pst",
    "health",
    "amk",
    "fire",
    "municipality",
    "statsbygg",
    "nsm",
    "dsb",
    "statsforvalteren",
]
#: Kinds of cooperating actors (*samvirkeaktører*).
COOPERATING_ACTOR_KINDS: Final[tuple[str, ...]] = get_args(CooperatingActorKind)

UnitKind = Literal["prison", "probation_office"]
UNIT_KINDS: Final[tuple[str, ...]] = get_args(UnitKind)

SecurityLevel = Literal["high", "lower"]
SECURITY_LEVELS: Final[tuple[str, ...]] = get_args(SecurityLevel)

#: The five regions of Kriminalomsorgen.
REGION_IDS: Final[tuple[str, ...]] = ("nord", "vest", "sorvest", "sor", "ost")

_M = TypeVar("_M", bound=BaseModel)

_DATA_DIR: Final[Path] = Path(__file__).resolve().parent / "data"

# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


class OrganisationError(SourceError):
    """A problem in an organisation file, pinned to file, line and field.

    ``problems`` holds every problem found (this one first), so a tool can list them all
    while ``str()`` stays a single compiler-style line.
    """


# --------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Person(_Frozen):
    """Someone holding a role; contact details feed the notifiers."""

    name: str = Field(min_length=1)
    phone: str | None = None
    email: str | None = None
    languages: tuple[str, ...] = ()


class Department(_Frozen):
    """An *avdeling*; security level may differ from the unit's."""

    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    security_level: SecurityLevel


class CooperatingActor(_Frozen):
    """A *samvirkeaktør* the unit must be able to involve (samvirkeprinsippet)."""

    kind: CooperatingActorKind
    name: str = Field(min_length=1)
    phone: str | None = None
    email: str | None = None


def _check_role_names(roles: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = [name for name in roles if name not in allowed]
    if unknown:
        raise ValueError(f"unknown role {unknown[0]!r} (allowed: {', '.join(allowed)})")
    empty = [name for name, persons in roles.items() if not persons]
    if empty:
        raise ValueError(f"role {empty[0]!r} lists nobody")


class Body(_Frozen):
    """JD or KDI: a level above the regions in the daily reporting line."""

    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    location: str | None = None
    roles: dict[str, tuple[Person, ...]] = Field(default_factory=dict)

    @field_validator("roles")
    @classmethod
    def _known_roles(cls, roles: dict[str, tuple[Person, ...]]) -> dict[str, tuple[Person, ...]]:
        _check_role_names(roles, BODY_ROLES)
        return roles

    def persons(self, role: str) -> tuple[Person, ...]:
        """People holding ``role`` (empty if nobody)."""
        return self.roles.get(role, ())

    def has_role(self, role: str) -> bool:
        """Whether at least one person holds ``role``."""
        return bool(self.roles.get(role))


class Region(Body):
    """One of the five regions; same roles vocabulary as JD/KDI."""


class Unit(_Frozen):
    """A prison or probation office: the level that owns incidents."""

    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    kind: UnitKind
    security_level: SecurityLevel | None = None
    region: str = Field(min_length=1)
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    # Norwegian county and municipality numbers (2024 division): CAP <geocode> matching.
    county: str | None = Field(default=None, pattern=r"^\d{2}$")
    municipality: str | None = Field(default=None, pattern=r"^\d{4}$")
    departments: tuple[Department, ...] = ()
    areas: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()  # other names the press uses ("Bergen kretsfengsel")
    roles: dict[str, tuple[Person, ...]]
    cooperating_actors: tuple[CooperatingActor, ...] = ()

    @field_validator("roles")
    @classmethod
    def _known_roles(cls, roles: dict[str, tuple[Person, ...]]) -> dict[str, tuple[Person, ...]]:
        _check_role_names(roles, DAILY_ROLES)
        if not any(roles.get(role) for role in ACCOUNTABLE_ROLES):
            raise ValueError(_NO_ACCOUNTABLE_ROLE)
        return roles

    @model_validator(mode="after")
    def _consistent(self) -> Unit:
        if self.kind == "prison" and self.security_level is None:
            raise ValueError("a prison needs a security_level (high or lower)")
        if self.municipality and self.county and not self.municipality.startswith(self.county):
            raise ValueError(
                f"municipality {self.municipality} does not lie in county {self.county} "
                "(a municipality number starts with its county's)"
            )
        seen: set[str] = set()
        for department in self.departments:
            if department.id in seen:
                raise ValueError(f"duplicate department id {department.id!r}")
            seen.add(department.id)
        return self

    def persons(self, role: str) -> tuple[Person, ...]:
        """People holding ``role`` (empty if nobody)."""
        return self.roles.get(role, ())

    def has_role(self, role: str) -> bool:
        """Whether at least one person holds ``role``."""
        return bool(self.roles.get(role))

    def missing_roles(self) -> tuple[str, ...]:
        """Daily roles nobody holds, in :data:`DAILY_ROLES` order."""
        return tuple(role for role in DAILY_ROLES if not self.has_role(role))

    def accountable_person(self) -> tuple[str, Person]:
        """(role, person) accountable now: leader, else deputy, else on duty."""
        for role in ACCOUNTABLE_ROLES:
            persons = self.roles.get(role)
            if persons:
                return role, persons[0]
        # Unreachable for validated units; kept so the return type stays honest.
        raise LookupError(f"unit {self.id!r}: {_NO_ACCOUNTABLE_ROLE}")

    def actors(self, kind: str) -> tuple[CooperatingActor, ...]:
        """Cooperating actors of ``kind`` (e.g. ``police``)."""
        return tuple(actor for actor in self.cooperating_actors if actor.kind == kind)

    def department(self, department_id: str) -> Department:
        """The department with this id (KeyError if unknown)."""
        for department in self.departments:
            if department.id == department_id:
                return department
        known = ", ".join(d.id for d in self.departments) or "none"
        raise KeyError(f"unit {self.id!r} has no department {department_id!r} (known: {known})")


_NO_ACCOUNTABLE_ROLE = (
    "no accountable role: at least one of leader, deputy or on_duty must name a person"
)


def _index_by_id(value: Any, what: str) -> Any:
    """Accept the file's list form and key it by id, refusing duplicates."""
    if not isinstance(value, list | tuple):
        return value
    indexed: dict[Any, Any] = {}
    for item in value:
        key = item.get("id") if isinstance(item, Mapping) else getattr(item, "id", None)
        if key in indexed:
            raise ValueError(f"duplicate {what} id {key!r}")
        indexed[key] = item
    return indexed


class Organisation(_Frozen):
    """JD, KDI, the regions and the units, with lookups the playbooks need.

    ``regions`` and ``units`` are dicts keyed by id, in file order.
    """

    ministry: Body
    directorate: Body
    regions: dict[str, Region]
    units: dict[str, Unit]

    @model_validator(mode="before")
    @classmethod
    def _lists_to_dicts(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            data = dict(data)
            if "regions" in data:
                data["regions"] = _index_by_id(data["regions"], "region")
            if "units" in data:
                data["units"] = _index_by_id(data["units"], "unit")
        return data

    @model_validator(mode="after")
    def _cross_references(self) -> Organisation:
        for key, region in self.regions.items():
            if key != region.id:
                raise ValueError(f"region keyed {key!r} has id {region.id!r}")
        for key, unit in self.units.items():
            if key != unit.id:
                raise ValueError(f"unit keyed {key!r} has id {unit.id!r}")
            if unit.region not in self.regions:
                known = ", ".join(self.regions)
                raise ValueError(
                    f"unit {unit.id!r}: unknown region {unit.region!r} (known: {known})"
                )
        return self

    # -- lookups -----------------------------------------------------------

    def unit(self, unit_id: str) -> Unit:
        """The unit with this id; KeyError naming the known ids otherwise."""
        try:
            return self.units[unit_id]
        except KeyError:
            raise KeyError(f"unknown unit {unit_id!r} (known: {', '.join(self.units)})") from None

    def region(self, region_id: str) -> Region:
        """The region with this id; KeyError naming the known ids otherwise."""
        try:
            return self.regions[region_id]
        except KeyError:
            raise KeyError(
                f"unknown region {region_id!r} (known: {', '.join(self.regions)})"
            ) from None

    def region_of(self, unit_id: str) -> Region:
        """The region a unit reports to."""
        return self.regions[self.unit(unit_id).region]

    def units_in_region(self, region_id: str) -> tuple[Unit, ...]:
        """Units of a region, in file order (KeyError for an unknown region)."""
        self.region(region_id)
        return tuple(unit for unit in self.units.values() if unit.region == region_id)

    def accountable_person(self, unit_id: str) -> tuple[str, Person]:
        """(role, person) accountable for a unit: leader, else deputy, else on duty."""
        return self.unit(unit_id).accountable_person()

    def has_role(self, unit_id: str, role: str) -> bool:
        """Whether someone at the unit holds the daily ``role``."""
        return self.unit(unit_id).has_role(role)

    def persons(self, unit_id: str, role: str) -> tuple[Person, ...]:
        """People at the unit holding the daily ``role``."""
        return self.unit(unit_id).persons(role)

    def missing_roles(self, unit_id: str) -> tuple[str, ...]:
        """Daily roles nobody at the unit holds."""
        return self.unit(unit_id).missing_roles()

    def reporting_line(self, unit_id: str) -> tuple[str, ...]:
        """Ids along the daily line, lowest first: unit, region, KDI, JD."""
        unit = self.unit(unit_id)
        return (unit.id, unit.region, self.directorate.id, self.ministry.id)


# --------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------


def demo_organisation_path() -> Path:
    """Path of the shipped demo organisation (fictional people, real units)."""
    return _DATA_DIR / "organisation.yaml"


def organisation_schema_path() -> Path:
    """Path of the JSON Schema (draft 2020-12) for organisation files."""
    return _DATA_DIR / "organisation.schema.json"


@lru_cache(maxsize=1)
def _schema_text() -> str:
    return organisation_schema_path().read_text(encoding="utf-8")


def organisation_schema() -> dict[str, Any]:
    """The JSON Schema as a fresh dict (callers may not mutate a shared one)."""
    schema: dict[str, Any] = json.loads(_schema_text())
    return schema


@lru_cache(maxsize=1)
def _validator() -> Any:
    return schema_validator(organisation_schema())


def _duplicates(
    items: Sequence[Mapping[str, Any]], base: JsonPath, what: str, root: yaml.Node | None
) -> Iterator[tuple[JsonPath, int | None, str]]:
    """Yield a problem for each repeated ``id`` among ``items`` (at ``base[i].id``)."""
    first_line: dict[str, int | None] = {}
    for index, item in enumerate(items):
        path: JsonPath = (*base, index, "id")
        line = line_of(root, path)
        if item["id"] in first_line:
            first = first_line[item["id"]]
            yield path, line, f"duplicate {what} id {item['id']!r} (first defined at line {first})"
        else:
            first_line[item["id"]] = line


def _reference_problems(
    data: dict[str, Any], root: yaml.Node | None
) -> Iterator[tuple[JsonPath, int | None, str]]:
    """Checks a schema cannot express: ids unique, regions known, someone accountable."""
    yield from _duplicates(data["regions"], ("regions",), "region", root)
    yield from _duplicates(data["units"], ("units",), "unit", root)
    region_ids = list(dict.fromkeys(region["id"] for region in data["regions"]))
    for index, unit in enumerate(data["units"]):
        if unit["region"] not in region_ids:
            path: JsonPath = ("units", index, "region")
            known = ", ".join(region_ids)
            yield path, line_of(root, path), f"unknown region {unit['region']!r} (known: {known})"
        departments = unit.get("departments", [])
        yield from _duplicates(departments, ("units", index, "departments"), "department", root)
        if not any(unit["roles"].get(role) for role in ACCOUNTABLE_ROLES):
            roles_path: JsonPath = ("units", index, "roles")
            yield roles_path, line_of(root, roles_path, at_key=True), _NO_ACCOUNTABLE_ROLE


def _pydantic_problems(
    exc: ValidationError, base: JsonPath, root: yaml.Node | None
) -> Iterator[tuple[JsonPath, int | None, str]]:
    """Map pydantic errors back to file positions (a safety net behind the schema)."""
    for error in exc.errors():
        loc = tuple(part for part in error["loc"] if part != "[key]")
        path: JsonPath = (*base, *(p if isinstance(p, int) else str(p) for p in loc))
        message = str(error["msg"]).removeprefix("Value error, ")
        yield path, line_of(root, path), message


# -- loading ---------------------------------------------------------------


def load_organisation(path: str | Path | None = None) -> Organisation:
    """Load and validate an organisation file (None: the shipped demo).

    Validation is the JSON Schema plus cross-references (regions exist, ids
    unique, every unit has an accountable role).  Raises
    :class:`OrganisationError` naming file, line and field.
    """
    source: str | Path = demo_organisation_path() if path is None else path
    file = Path(source)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise OrganisationError(
            f"organisation file not found ({file.resolve()})", path=source
        ) from None
    except IsADirectoryError:
        raise OrganisationError(
            "expected an organisation file, got a directory", path=source
        ) from None
    except UnicodeDecodeError as exc:
        raise OrganisationError(
            f"file is not UTF-8 text ({exc.reason} at byte {exc.start})", path=source
        ) from None
    except OSError as exc:
        raise OrganisationError(
            f"cannot read organisation file: {exc.strerror or exc}", path=source
        ) from None

    root, data = parse(source, text, OrganisationError)
    if root is None:
        raise OrganisationError(
            "file is empty; expected ministry, directorate, regions and units", path=source, line=1
        )

    raise_if_any(source, list(duplicate_keys(root)), OrganisationError)
    raise_if_any(source, list(schema_problems(_validator(), data, root)), OrganisationError)
    raise_if_any(source, list(_reference_problems(data, root)), OrganisationError)

    problems: list[tuple[JsonPath, int | None, str]] = []

    def build(model: type[_M], raw: Any, base: JsonPath) -> _M | None:
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            problems.extend(_pydantic_problems(exc, base, root))
            return None

    ministry = build(Body, data["ministry"], ("ministry",))
    directorate = build(Body, data["directorate"], ("directorate",))
    regions = [build(Region, raw, ("regions", i)) for i, raw in enumerate(data["regions"])]
    units = [build(Unit, raw, ("units", i)) for i, raw in enumerate(data["units"])]
    raise_if_any(source, problems, OrganisationError)
    assert ministry is not None and directorate is not None  # problems were empty
    try:
        return Organisation(
            ministry=ministry,
            directorate=directorate,
            regions={r.id: r for r in regions if r is not None},
            units={u.id: u for u in units if u is not None},
        )
    except ValidationError as exc:  # pragma: no cover - the checks above cover these
        raise_if_any(source, list(_pydantic_problems(exc, (), root)), OrganisationError)
        raise
