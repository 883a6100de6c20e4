"""Playbook files: every shipped one loads; bad ones fail naming file, line and field."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from crisis.domain.organisation import Organisation, load_organisation
from crisis.domain.rules import check_notification_order
from crisis.sources.incident_types import INCIDENT_TYPE_LABELS
from playbooks import INCIDENT_TYPES, incident_type_for
from playbooks.duration import iso_duration, parse_duration
from playbooks.loader import PlaybookError, library_path, load_library, load_playbook

VALID = textwrap.dedent(
    """\
    version: 1
    id: test-brann
    title: Brann (test)
    handles: [fire]
    severity: 4
    impact: {liv_og_helse: 4}
    cards:
      - id: varsle
        title: Varsle brannvesenet
        role: on_duty
        deadline: PT2M
        checklist: [Ring 110]
    cooperation:
      - {id: brann, kind: fire, when: 2m, purpose: Slokking}
    notifications:
      - {id: ansatte, group: staff, after: 0m, template: varsel_ansatte}
      - {id: media, group: media, after: 1h, template: varsel_media}
    escalation:
      region:
        any:
          - severity_at_least: 5
          - open_longer_than: 2h
    """
)


@pytest.fixture(scope="module")
def org() -> Organisation:
    return load_organisation()


def _write(tmp_path: Path, text: str, name: str = "test.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def test_every_shipped_playbook_loads(org: Organisation) -> None:
    files = sorted(library_path().glob("*.yaml"))
    assert len(files) == 15
    for file in files:
        playbook = load_playbook(file, org=org)
        assert playbook.cards, file
        assert playbook.escalation is not None
    library = load_library(org=org)
    assert library.incident_types == set(INCIDENT_TYPE_LABELS)
    assert library.for_type("breath_motion_absent").id == "pust-bevegelse"  # type: ignore[union-attr]
    assert library.defaults_for("fire") == (
        4,
        {"liv_og_helse": 5, "samfunnsoppdraget": 3, "okonomi": 3, "ytre_miljo": 2},
    )
    assert not library.playbooks["sikkerhetspolitisk"].proximity


def test_valid_playbook_is_typed(tmp_path: Path, org: Organisation) -> None:
    playbook = load_playbook(_write(tmp_path, VALID), org=org)
    assert playbook.cards[0].deadline == timedelta(minutes=2)
    assert playbook.cards[0].checklist == ("Ring 110",)
    assert playbook.cooperation[0].when == timedelta(minutes=2)
    assert playbook.escalation["region"].mode == "any"
    assert [c.name for c in playbook.escalation["region"].conditions] == [
        "severity_at_least",
        "open_longer_than",
    ]
    assert playbook.rule("varsle") == "rule:test-brann/varsle"


def test_unknown_role_fails_with_file_line_and_field(tmp_path: Path, org: Organisation) -> None:
    text = VALID.replace("role: on_duty", "role: krisekoordinator")
    path = _write(tmp_path, text)
    with pytest.raises(PlaybookError) as info:
        load_playbook(path, org=org)
    err = info.value
    assert err.line == _line_of(text, "krisekoordinator")
    assert err.field == "cards[0].role"
    assert str(err).startswith(f"{path}:{err.line}: cards[0].role: unknown role 'krisekoordinator'")
    assert "likhetsprinsippet" in str(err)


@pytest.mark.parametrize(
    ("role", "message"),
    [
        ("kdi:krisestab", "unknown role 'krisestab' at kdi"),
        ("kommune:leader", "wrong format"),
        ("kdi:family_liaison", None),  # KDI has one in the demo organisation: allowed
        ("jd:deputy", "held by nobody at JD"),  # a body role JD's organisation does not staff
    ],
)
def test_body_roles_are_checked_against_the_organisation(
    tmp_path: Path, org: Organisation, role: str, message: str | None
) -> None:
    path = _write(tmp_path, VALID.replace("role: on_duty", f"role: {role}"))
    if message is None:
        assert str(load_playbook(path, org=org).cards[0].role) == role
        return
    with pytest.raises(PlaybookError, match=message):
        load_playbook(path, org=org)


def test_a_role_nobody_in_the_organisation_holds_fails(tmp_path: Path, org: Organisation) -> None:
    stripped = org.model_copy(
        update={
            "units": {
                uid: unit.model_copy(
                    update={"roles": {k: v for k, v in unit.roles.items() if k != "family_liaison"}}
                )
                for uid, unit in org.units.items()
            }
        }
    )
    path = _write(tmp_path, VALID.replace("role: on_duty", "role: family_liaison"))
    with pytest.raises(PlaybookError, match="no unit of the organisation has anyone in role"):
        load_playbook(path, org=stripped)
    assert load_playbook(path, org=org).cards[0].role.role == "family_liaison"


@pytest.mark.parametrize(
    ("old", "new", "field", "message", "needle"),
    [
        ("severity: 4", "severity: 9", "severity", "out of range", "severity: 9"),
        ("severity: 4", "severity: høy", "severity", "expected an integer", "severity: høy"),
        ("deadline: PT2M", "deadline: snart", "cards[0].deadline", "wrong format", "snart"),
        (
            "kind: fire",
            "kind: brannvesen",
            "cooperation[0].kind",
            "unknown cooperating actor kind",
            "kind: brannvesen",
        ),
        (
            "group: staff",
            "group: everyone",
            "notifications[0].group",
            "invalid value 'everyone'",
            "everyone",
        ),
        ("handles: [fire]", "handles: [flood]", "handles[0]", "unknown incident type", "flood"),
        ("    title: Varsle", "    titel: Varsle", "cards[0].titel", "unknown field", "titel"),
        (
            "- severity_at_least: 5",
            "- flag: tsunami",
            "escalation.region.any[0].flag",
            "unknown flag",
            "tsunami",
        ),
        (
            "- severity_at_least: 5",
            "- {severity_at_least: 5, flag: death}",
            "escalation.region.any[0]",
            "exactly one key",
            "flag: death",
        ),
        (
            "group: staff, after: 0m",
            "group: staff, after: 2h",
            "notifications[1].after",
            "notified before staff",
            "group: media",
        ),
        (
            "id: brann,",
            "id: varsle,",
            "cooperation[0].id",
            "duplicate rule id 'varsle'",
            "id: varsle,",
        ),
    ],
)
def test_schema_and_cross_check_errors_name_the_field(
    tmp_path: Path, org: Organisation, old: str, new: str, field: str, message: str, needle: str
) -> None:
    assert old in VALID
    text = VALID.replace(old, new, 1)
    path = _write(tmp_path, text)
    with pytest.raises(PlaybookError) as info:
        load_playbook(path, org=org)
    hit = next((p for p in info.value.problems if p.field == field), None)
    assert hit is not None, [str(p) for p in info.value.problems]
    assert message in hit.message
    assert hit.line == _line_of(text, needle)
    assert str(hit).startswith(f"{path}:{hit.line}: {field}: ")


def test_missing_field_and_bad_yaml(tmp_path: Path, org: Organisation) -> None:
    text = VALID.replace("severity: 4\n", "")
    with pytest.raises(PlaybookError, match="severity: required field is missing"):
        load_playbook(_write(tmp_path, text), org=org)
    with pytest.raises(PlaybookError) as info:
        load_playbook(_write(tmp_path, "id: [unclosed\n"), org=org)
    assert "invalid YAML" in str(info.value) and info.value.line == 2
    with pytest.raises(PlaybookError, match="duplicate key 'severity'"):
        load_playbook(_write(tmp_path, VALID + "severity: 3\n"), org=org)
    with pytest.raises(PlaybookError, match="file is empty"):
        load_playbook(_write(tmp_path, ""), org=org)


def test_library_refuses_two_playbooks_for_one_type(tmp_path: Path, org: Organisation) -> None:
    _write(tmp_path, VALID, "a.yaml")
    _write(tmp_path, VALID.replace("id: test-brann", "id: annen-brann"), "b.yaml")
    with pytest.raises(PlaybookError, match="'fire' is already handled by playbook 'test-brann'"):
        load_library(tmp_path, org=org)
    with pytest.raises(PlaybookError, match="playbook directory not found"):
        load_library(tmp_path / "does-not-exist", org=org)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PlaybookError, match="no playbooks"):
        load_library(tmp_path / "empty", org=org)


def test_durations_and_vocabulary() -> None:
    assert parse_duration("PT1H30M") == timedelta(minutes=90)
    assert parse_duration("5m") == parse_duration("5 min") == timedelta(minutes=5)
    assert parse_duration("1d") == timedelta(days=1)
    assert parse_duration(0) == timedelta(0)
    assert iso_duration(timedelta(minutes=90)) == "PT1H30M"
    assert iso_duration(timedelta(0)) == "PT0S"
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("P")
    assert incident_type_for("no.kriminalomsorgen.sensor.breath_absent") == "breath_motion_absent"
    assert incident_type_for("sensor.ek_tamper") == "ek_breach"
    assert incident_type_for("report.incident", {"category": "Rømning"}) == "escape"
    assert incident_type_for("report.incident", {"category": "noe annet"}) is None
    from crisis.sources.events import EVENT_TYPES

    assert set(INCIDENT_TYPES) == set(EVENT_TYPES)


def test_staff_before_the_public_rule() -> None:
    plan = [
        {"group": "media", "after": timedelta(0), "index": 0},
        {"group": "staff", "after": timedelta(minutes=5), "index": 1},
    ]
    [violation] = check_notification_order(plan)
    assert violation.field == "0" and violation.principle == "krisekommunikasjon"
    plan[1]["after"] = timedelta(0)
    assert check_notification_order(plan) == []
    assert check_notification_order([{"group": "media", "after": 0, "index": 0}])
