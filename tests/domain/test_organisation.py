"""Tests for the organisation model and its loader.

The organisation is what the preparedness principles hang on (owning unit,
accountable role, reporting line), so the demo must be complete and a broken
file must be reported at the right file, line and field.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from crisis.domain.organisation import (
    ACCOUNTABLE_ROLES,
    BODY_ROLES,
    COOPERATING_ACTOR_KINDS,
    DAILY_ROLES,
    REGION_IDS,
    Organisation,
    OrganisationError,
    Person,
    Unit,
    demo_organisation_path,
    load_organisation,
    organisation_schema,
    organisation_schema_path,
)

REQUIRED_DEMO_UNITS = {
    "agder-froland": ("Agder fengsel, avdeling Froland", "sorvest", "prison", "high"),
    "agder-mandal": ("Agder fengsel, avdeling Mandal", "sorvest", "prison", "lower"),
    "ringerike": ("Ringerike fengsel", "sor", "prison", "high"),
    "trondheim": ("Trondheim fengsel", "nord", "prison", "high"),
    "telemark-skien": ("Telemark fengsel, avdeling Skien", "sor", "prison", "high"),
    "vadso": ("Vadsø fengsel", "nord", "prison", "high"),
    "ravneberget": ("Ravneberget fengsel", "ost", "prison", "high"),
    "oslo": ("Oslo fengsel", "ost", "prison", "high"),
    "ila": ("Ila fengsel og forvaringsanstalt", "sor", "prison", "high"),
    "bergen": ("Bergen fengsel", "vest", "prison", "high"),
    "stavanger": ("Stavanger fengsel", "sorvest", "prison", "high"),
    "tromso": ("Tromsø fengsel", "nord", "prison", "high"),
    "bodo": ("Bodø fengsel", "nord", "prison", "high"),
    "halden": ("Halden fengsel", "ost", "prison", "high"),
    "oslo-friomsorg": ("Oslo friomsorgskontor", "ost", "probation_office", None),
    "agder-friomsorg": ("Agder friomsorgskontor", "sorvest", "probation_office", None),
}


@pytest.fixture(scope="module")
def demo() -> Organisation:
    return load_organisation()


# --------------------------------------------------------------------------
# The shipped demo
# --------------------------------------------------------------------------


def test_demo_loads_from_default_and_explicit_path(demo: Organisation) -> None:
    explicit = load_organisation(demo_organisation_path())
    assert explicit == demo
    assert demo.ministry.id == "jd"
    assert demo.ministry.name == "Justis- og beredskapsdepartementet"
    assert demo.directorate.id == "kdi"
    assert demo.directorate.location == "Lillestrøm"


def test_demo_has_the_five_regions(demo: Organisation) -> None:
    assert list(demo.regions) == ["nord", "vest", "sorvest", "sor", "ost"]
    assert demo.regions["sorvest"].name == "Region sørvest"
    assert demo.regions["ost"].name == "Region øst"
    for region in demo.regions.values():
        assert region.name == f"Region {region.name.split()[-1]}"
        assert region.name.lower().startswith("region ")


def test_demo_has_the_required_real_units(demo: Organisation) -> None:
    assert len(demo.units) >= 14
    for unit_id, (name, region, kind, level) in REQUIRED_DEMO_UNITS.items():
        unit = demo.unit(unit_id)
        assert (unit.name, unit.region, unit.kind, unit.security_level) == (
            name,
            region,
            kind,
            level,
        ), unit_id
    probation = [u for u in demo.units.values() if u.kind == "probation_office"]
    assert len(probation) >= 2
    # Every region owns at least one unit.
    assert {u.region for u in demo.units.values()} == set(REGION_IDS)


def test_every_demo_unit_references_a_known_region(demo: Organisation) -> None:
    for unit in demo.units.values():
        assert unit.region in demo.regions
        assert demo.region_of(unit.id).id == unit.region


def test_every_demo_unit_fills_every_daily_role(demo: Organisation) -> None:
    for unit in demo.units.values():
        for role in DAILY_ROLES:
            assert demo.has_role(unit.id, role), (unit.id, role)
            assert len(demo.persons(unit.id, role)) >= 1
        assert demo.missing_roles(unit.id) == ()
        assert demo.accountable_person(unit.id)[0] == "leader"


def test_demo_kdi_and_regions_have_communication_roles(demo: Organisation) -> None:
    for role in (
        "communication_staff",
        "media_contact_primary",
        "media_contact_alternate",
        "leader",
        "on_duty",
    ):
        assert demo.directorate.has_role(role), role
    for region in demo.regions.values():
        assert region.has_role("media_contact_primary"), region.id
        assert region.has_role("media_contact_alternate"), region.id
        assert region.has_role("family_liaison"), region.id


def test_every_demo_unit_has_the_core_cooperating_actors(demo: Organisation) -> None:
    for unit in demo.units.values():
        kinds = {actor.kind for actor in unit.cooperating_actors}
        assert {"police", "fire", "municipality"} <= kinds, unit.id
        assert kinds & {"health", "amk"}, unit.id
        assert kinds <= set(COOPERATING_ACTOR_KINDS)
    assert demo.unit("agder-froland").actors("police")[0].name == "Agder politidistrikt"


def test_demo_prisons_have_levels_departments_and_areas(demo: Organisation) -> None:
    for unit in demo.units.values():
        if unit.kind == "prison":
            assert unit.security_level in ("high", "lower"), unit.id
            assert unit.departments, unit.id
            assert unit.areas, unit.id
        ids = [d.id for d in unit.departments]
        assert len(ids) == len(set(ids)), unit.id
    assert demo.unit("agder-froland").department("froland-a").security_level == "high"
    with pytest.raises(KeyError, match="no department 'x'"):
        demo.unit("agder-froland").department("x")


def test_demo_coordinates_are_plausible(demo: Organisation) -> None:
    units = demo.units
    for unit in units.values():
        assert 57.9 < unit.lat < 71.2 and 4.5 < unit.lon < 31.2, unit.id
    # North-south and east-west order of some well-known places.
    assert units["vadso"].lat > units["tromso"].lat > units["bodo"].lat > units["trondheim"].lat
    assert (
        units["trondheim"].lat > units["bergen"].lat > units["oslo"].lat > units["agder-mandal"].lat
    )
    assert units["vadso"].lon > 29 and units["bergen"].lon < 6
    assert units["agder-mandal"].lat < units["agder-froland"].lat
    assert len({(u.lat, u.lon) for u in units.values()}) == len(units)


def test_demo_people_are_clearly_fictional(demo: Organisation) -> None:
    people: list[Person] = []
    for body in (demo.ministry, demo.directorate, *demo.regions.values()):
        people += [p for persons in body.roles.values() for p in persons]
    for unit in demo.units.values():
        people += [p for persons in unit.roles.values() for p in persons]
    assert len(people) > 14 * len(DAILY_ROLES)
    for person in people:
        assert person.name.endswith(" (demo)"), person.name
        assert person.email is not None and person.email.endswith("@demo.kriminalomsorgen.invalid")
        assert person.phone is not None and person.phone.startswith("+47 400 ")
    assert demo.ministry.persons("leader")[0].name == "Kari Nordmann (demo)"
    phones = [p.phone for p in people]
    assert len(phones) == len(set(phones))


def test_demo_validates_against_the_schema_directly() -> None:
    schema = organisation_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    data = yaml.safe_load(demo_organisation_path().read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema).validate(data)
    assert organisation_schema_path().name == "organisation.schema.json"


def test_schema_vocabulary_matches_the_python_constants() -> None:
    defs = organisation_schema()["$defs"]
    assert tuple(defs["unitRoles"]["properties"]) == DAILY_ROLES
    assert tuple(defs["bodyRoles"]["properties"]) == BODY_ROLES
    assert tuple(defs["cooperatingActor"]["properties"]["kind"]["enum"]) == COOPERATING_ACTOR_KINDS
    assert tuple(defs["region"]["properties"]["id"]["enum"]) == REGION_IDS
    assert ACCOUNTABLE_ROLES == ("leader", "deputy", "on_duty")
    assert set(ACCOUNTABLE_ROLES) <= set(DAILY_ROLES)


# --------------------------------------------------------------------------
# Lookups
# --------------------------------------------------------------------------


def test_lookups(demo: Organisation) -> None:
    assert next(iter(demo.units)) == "trondheim"  # file order is kept
    assert demo.region_of("agder-froland").name == "Region sørvest"
    assert [u.id for u in demo.units_in_region("ost")] == [
        "oslo",
        "halden",
        "ravneberget",
        "oslo-friomsorg",
    ]
    assert demo.reporting_line("ringerike") == ("ringerike", "sor", "kdi", "jd")
    assert demo.has_role("oslo", "no_such_role") is False
    with pytest.raises(KeyError, match=r"unknown unit 'midt-fengsel' \(known: trondheim, tromso"):
        demo.unit("midt-fengsel")
    with pytest.raises(KeyError, match="unknown unit"):
        demo.accountable_person("midt-fengsel")
    with pytest.raises(
        KeyError, match=r"unknown region 'midt' \(known: nord, vest, sorvest, sor, ost\)"
    ):
        demo.units_in_region("midt")


def test_models_are_frozen(demo: Organisation) -> None:
    unit = demo.unit("oslo")
    with pytest.raises(ValidationError):
        unit.name = "Annet fengsel"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        demo.ministry = demo.directorate  # type: ignore[misc]


def test_model_validation_refuses_duplicates_and_unknown_regions(demo: Organisation) -> None:
    oslo = demo.unit("oslo").model_dump()
    base = {
        "ministry": demo.ministry.model_dump(),
        "directorate": demo.directorate.model_dump(),
        "regions": [r.model_dump() for r in demo.regions.values()],
    }
    with pytest.raises(ValidationError, match="duplicate unit id 'oslo'"):
        Organisation.model_validate({**base, "units": [oslo, oslo]})
    with pytest.raises(ValidationError, match="unknown region 'midt'"):
        Organisation.model_validate({**base, "units": [{**oslo, "region": "midt"}]})
    with pytest.raises(ValidationError, match="unknown role 'boss'"):
        Unit.model_validate({**oslo, "roles": {"boss": [{"name": "X"}]}})
    with pytest.raises(ValidationError, match="security_level"):
        Unit.model_validate({**oslo, "security_level": None})


# --------------------------------------------------------------------------
# Small organisations written by hand
# --------------------------------------------------------------------------

HEADER = """\
ministry:
  id: jd
  name: Justis- og beredskapsdepartementet
  roles: {}
directorate:
  id: kdi
  name: Kriminalomsorgsdirektoratet
  roles: {}
regions:
  - {id: nord, name: Region nord, roles: {}}
  - {id: vest, name: Region vest, roles: {}}
units:
"""  # 12 lines; the first unit starts on line 13


def unit_yaml(
    unit_id: str = "tromso", *, region: str = "nord", kind: str = "prison", roles: str | None = None
) -> str:
    roles = roles if roles is not None else "leader: [{name: Leder (test)}]"
    return textwrap.indent(
        textwrap.dedent(
            f"""\
            - id: {unit_id}
              name: Testenhet {unit_id}
              kind: {kind}
              security_level: high
              region: {region}
              lat: 69.65
              lon: 18.96
              roles: {{{roles}}}
              cooperating_actors: [{{kind: police, name: Troms politidistrikt}}]
            """
        ),
        "  ",
    )


def write(tmp_path: Path, text: str, name: str = "organisation.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_error(path: Path) -> OrganisationError:
    with pytest.raises(OrganisationError) as info:
        load_organisation(path)
    return info.value


def test_small_organisation_loads(tmp_path: Path) -> None:
    org = load_organisation(
        write(tmp_path, HEADER + unit_yaml("tromso") + unit_yaml("bergen", region="vest"))
    )
    assert list(org.units) == ["tromso", "bergen"]
    assert org.region_of("bergen").id == "vest"
    assert org.missing_roles("tromso") == DAILY_ROLES[1:]


@pytest.mark.parametrize(
    ("roles", "expected_role", "expected_name"),
    [
        ("leader: [{name: L}], deputy: [{name: D}], on_duty: [{name: V}]", "leader", "L"),
        ("deputy: [{name: D1}, {name: D2}], on_duty: [{name: V}]", "deputy", "D1"),
        ("on_duty: [{name: V}], family_liaison: [{name: F}]", "on_duty", "V"),
        ("on_duty: [{name: V}], leader: [{name: L}]", "leader", "L"),
    ],
)
def test_accountable_person_falls_back_leader_deputy_on_duty(
    tmp_path: Path, roles: str, expected_role: str, expected_name: str
) -> None:
    org = load_organisation(write(tmp_path, HEADER + unit_yaml("tromso", roles=roles)))
    role, person = org.accountable_person("tromso")
    assert (role, person.name) == (expected_role, expected_name)


def test_unit_without_any_accountable_role_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + unit_yaml("tromso", roles="family_liaison: [{name: F}]"))
    error = load_error(path)
    assert (error.line, error.field) == (20, "units[0].roles")
    assert "no accountable role" in error.message


def test_unknown_region_names_file_line_and_field(tmp_path: Path) -> None:
    text = HEADER + unit_yaml("tromso") + unit_yaml("bergen", region="midt")
    lines = text.splitlines()
    assert lines[25] == "    region: midt"  # line 26: 12 header lines + 9 for the first unit + 5
    path = write(tmp_path, text)
    error = load_error(path)
    assert error.path == str(path)
    assert error.line == 26
    assert error.field == "units[1].region"
    assert error.message == "unknown region 'midt' (known: nord, vest)"
    assert str(error) == f"{path}:26: units[1].region: unknown region 'midt' (known: nord, vest)"
    assert "organisation.yaml:26: units[1].region" in str(error)
    assert isinstance(error, ValueError)


def test_unknown_region_line_follows_the_value(tmp_path: Path) -> None:
    text = HEADER + unit_yaml("tromso").replace(
        "region: nord", "region:\n      # moved\n      midt"
    )
    error = load_error(write(tmp_path, text))
    assert (error.line, error.field) == (19, "units[0].region")


def test_schema_violation_names_field_and_line(tmp_path: Path) -> None:
    text = HEADER + unit_yaml("tromso") + unit_yaml("bergen", region="vest", kind="castle")
    error = load_error(write(tmp_path, text))
    assert error.line == 24
    assert error.field == "units[1].kind"
    assert error.message == "invalid value 'castle' (allowed: prison, probation_office)"


def test_missing_name_is_reported_at_the_unit(tmp_path: Path) -> None:
    second = unit_yaml("bergen", region="vest").replace("    name: Testenhet bergen\n", "")
    error = load_error(write(tmp_path, HEADER + unit_yaml("tromso") + second))
    assert (error.line, error.field, error.message) == (
        22,
        "units[1].name",
        "required field is missing",
    )


def test_missing_top_level_name_is_reported_at_its_key(tmp_path: Path) -> None:
    text = HEADER.replace("  name: Kriminalomsorgsdirektoratet\n", "") + unit_yaml()
    error = load_error(write(tmp_path, text))
    assert (error.line, error.field) == (5, "directorate.name")


def test_unknown_field_is_reported_at_its_key(tmp_path: Path) -> None:
    text = HEADER + unit_yaml().replace("    lon: 18.96\n", "    lon: 18.96\n    colour: red\n")
    error = load_error(write(tmp_path, text))
    assert (error.line, error.field) == (20, "units[0].colour")
    assert error.message.startswith(
        "unknown field 'colour' (allowed: aliases, areas, cooperating_actors,"
    )


def test_yaml_boolean_trap_is_explained(tmp_path: Path) -> None:
    text = HEADER + unit_yaml(roles="leader: [{name: L, languages: [nb, no]}]")
    error = load_error(write(tmp_path, text))
    assert (error.line, error.field) == (20, "units[0].roles.leader[0].languages[1]")
    assert "boolean False" in error.message and "quote it" in error.message


def test_prison_needs_security_level(tmp_path: Path) -> None:
    text = HEADER + unit_yaml().replace("    security_level: high\n", "")
    error = load_error(write(tmp_path, text))
    assert (error.line, error.field) == (13, "units[0].security_level")
    # A probation office may omit it.
    office = unit_yaml(kind="probation_office").replace("    security_level: high\n", "")
    org = load_organisation(write(tmp_path, HEADER + office, "office.yaml"))
    assert org.unit("tromso").security_level is None


def test_wrong_ministry_id_is_reported(tmp_path: Path) -> None:
    error = load_error(write(tmp_path, HEADER.replace("id: jd", "id: dep") + unit_yaml()))
    assert (error.line, error.field, error.message) == (2, "ministry.id", "must be 'jd', not 'dep'")


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    text = HEADER + unit_yaml().replace("lat: 69.65", "lat: [69.65")
    path = write(tmp_path, text)
    error = load_error(path)
    assert error.line == 19  # the line after the unclosed '[' where the parser gives up
    assert error.field is None
    assert error.message.startswith("invalid YAML: ")
    assert str(error).startswith(f"{path}:19: invalid YAML")


def test_tab_indentation_names_line(tmp_path: Path) -> None:
    error = load_error(write(tmp_path, "ministry:\n  id: jd\n\tname: x\n"))
    assert error.line == 3
    assert "invalid YAML" in error.message


def test_duplicate_unit_id_is_refused(tmp_path: Path) -> None:
    error = load_error(write(tmp_path, HEADER + unit_yaml("tromso") + unit_yaml("tromso")))
    assert (error.line, error.field) == (22, "units[1].id")
    assert error.message == "duplicate unit id 'tromso' (first defined at line 13)"


def test_duplicate_department_id_is_refused(tmp_path: Path) -> None:
    departments = (
        "    departments:\n"
        "      - {id: a, name: Avdeling A, security_level: high}\n"
        "      - {id: a, name: Avdeling A2, security_level: lower}\n"
    )
    text = HEADER + unit_yaml().replace("    roles:", departments + "    roles:")
    error = load_error(write(tmp_path, text))
    assert (error.line, error.field) == (22, "units[0].departments[1].id")
    assert error.message == "duplicate department id 'a' (first defined at line 21)"


def test_duplicate_region_id_is_refused(tmp_path: Path) -> None:
    text = (
        HEADER.replace("{id: vest, name: Region vest", "{id: nord, name: Region nord 2")
        + unit_yaml()
    )
    error = load_error(write(tmp_path, text))
    assert (error.line, error.field) == (11, "regions[1].id")


def test_duplicate_yaml_key_is_refused(tmp_path: Path) -> None:
    text = HEADER + unit_yaml().replace(
        "    region: nord\n", "    region: nord\n    region: vest\n"
    )
    error = load_error(write(tmp_path, text))
    assert (error.line, error.field) == (18, "units[0].region")
    assert error.message == "duplicate key 'region' (first at line 17)"


def test_all_problems_are_collected(tmp_path: Path) -> None:
    text = HEADER + unit_yaml("tromso", kind="castle") + unit_yaml("bergen", kind="fort")
    error = load_error(write(tmp_path, text))
    assert [(p.line, p.field) for p in error.problems] == [
        (15, "units[0].kind"),
        (24, "units[1].kind"),
    ]
    assert error.problems[0] is error


def test_missing_file_gives_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.yaml"
    error = load_error(missing)
    assert error.path == str(missing)
    assert error.line is None
    assert "not found" in str(error) and "nowhere.yaml" in str(error)


def test_empty_and_non_mapping_files_are_refused(tmp_path: Path) -> None:
    empty = load_error(write(tmp_path, "# nothing here\n", "empty.yaml"))
    assert "empty" in empty.message
    listing = load_error(write(tmp_path, "- a\n- b\n", "list.yaml"))
    assert (listing.line, listing.message) == (1, "expected a mapping, got a list")


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(count=st.integers(min_value=1, max_value=6), data=st.data())
def test_unknown_region_is_always_located(tmp_path: Path, count: int, data: st.DataObject) -> None:
    bad = data.draw(st.integers(min_value=0, max_value=count - 1))
    units = [unit_yaml(f"u{i}", region="midt" if i == bad else "vest") for i in range(count)]
    text = HEADER + "".join(units)
    expected_line = text.splitlines().index("    region: midt") + 1
    error = load_error(write(tmp_path, text))
    assert (error.line, error.field) == (expected_line, f"units[{bad}].region")
    assert expected_line == 13 + 9 * bad + 4
