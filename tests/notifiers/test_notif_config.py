"""The recipients file: the shipped example is valid; mistakes name file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from crisis.domain.organisation import load_organisation
from notifiers.config import (
    APPROVAL_KINDS,
    NotifyConfigError,
    example_config_path,
    load_notify_config,
    parse_notify_config,
)

GOOD = """version: 1
people:
  - id: a
    name: A
    contacts:
      - {channel: sms, url: "json://127.0.0.1:9/sms?:to=%2B4740000001"}
groups:
  - {id: g, kind: staff, members: [a]}
"""


def test_the_shipped_example_is_valid_and_matches_the_demo_organisation() -> None:
    config = load_notify_config()
    org = load_organisation()
    assert {g.unit for g in config.groups if g.unit} <= set(org.units)
    kinds = {g.kind for g in config.groups}
    assert {"staff", "leaders", "safety", "unions", "inmates", "ministry", "families"} <= kinds
    assert {"media", "public", "cooperating"} <= kinds
    inmates = next(g for g in config.groups if g.kind == "inmates")
    languages = {config.person(m).languages[0] for m in inmates.members}
    assert len(languages - {"nb", "en"}) >= 3
    assert all(len(config.person(m).contacts) >= 1 for g in config.groups for m in g.members)
    assert any(len(p.contacts) >= 2 for p in config.people)  # primary and alternate
    assert config.exercises  # participant lists
    assert APPROVAL_KINDS == {"families", "ministry", "media", "public", "inmates"}


def test_the_example_is_what_load_reads_from_a_path(tmp_path: Path) -> None:
    path = tmp_path / "notify.yaml"
    path.write_text(example_config_path().read_text(encoding="utf-8"), encoding="utf-8")
    assert load_notify_config(path).people == load_notify_config().people


@pytest.mark.parametrize(
    ("broken", "line", "field", "message"),
    [
        (GOOD.replace("kind: staff", "kind: staf"), 8, "groups[0].kind", "Input should be"),
        (GOOD.replace("members: [a]", "members: [b]"), 8, "groups[0].members[0]", "unknown person"),
        (GOOD.replace("channel: sms", "channel: pigeon"), 6, "people[0].contacts[0].channel", ""),
        (GOOD.replace("    name: A\n", ""), 3, "people[0].name", "Field required"),
        (GOOD + "exercises:\n  ovelse-1: [zed]\n", 10, "exercises.ovelse-1[0]", "unknown person"),
        (GOOD.replace("version: 1", "version: 1\nextra: 2"), 2, "extra", "not permitted"),
        (GOOD.replace("json://127", "nosuch://127"), 6, "people[0].contacts[0].url", "apprise"),
    ],
)
def test_errors_name_file_line_and_field(broken: str, line: int, field: str, message: str) -> None:
    with pytest.raises(NotifyConfigError) as info:
        parse_notify_config(broken, "notify.yaml")
    text = str(info.value)
    assert text.startswith(f"notify.yaml:{line}: {field}: "), text
    assert message in text


def test_invalid_yaml_and_missing_file_are_clear(tmp_path: Path) -> None:
    with pytest.raises(NotifyConfigError, match=r"^notify.yaml:2: invalid YAML"):
        parse_notify_config("a: b\n  c: d\n", "notify.yaml")
    with pytest.raises(NotifyConfigError, match="cannot read"):
        load_notify_config(tmp_path / "missing.yaml")
