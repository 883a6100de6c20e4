"""The board's intake forms (web/board/intake.py): report categories, event forms, roles."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from crisis.log.privacy import PERSONAL_FIELDS
from crisis.sources import catalogue
from crisis.sources.events import EventError, validate_event
from crisis.sources.incident_types import INCIDENT_TYPE_LABELS, REPORT_CATEGORIES
from crisis.sources.reports import REPORT_DATA, REPORT_REFS, report_event
from tests.conftest import ApiHarness
from web.board.intake import REPORT_FORM_CATEGORIES, EventForm, event_forms, report_categories

UNITS = {"agder-froland", "ringerike"}


@pytest.mark.parametrize("value", sorted(REPORT_FORM_CATEGORIES))
def test_every_report_category_opens_its_incident_type(value: str) -> None:
    expected = REPORT_FORM_CATEGORIES[value]
    assert REPORT_CATEGORIES[value] == expected
    raw = report_event(
        {"category": value, "place": "Avdeling B", "what": "Noe skjedde"},
        reporter="kari",
        unit="agder-froland",
        event_id="r-1",
        time="2026-11-22T02:41:07Z",
    )
    env = validate_event(raw, known_units=UNITS)
    assert catalogue.incident_type_for(env.type, env.data) == expected


def test_the_categories_cover_every_incident_type_with_human_labels() -> None:
    assert set(REPORT_FORM_CATEGORIES.values()) == set(INCIDENT_TYPE_LABELS)
    for lang, index in (("nb", 0), ("en", 1)):
        shown = report_categories(lang)
        assert [c.label for c in shown] == sorted(c.label for c in shown)
        for c in shown:
            assert c.label == INCIDENT_TYPE_LABELS[c.incident_type][index]
            assert "_" not in c.label, "a label, not a raw id"


def test_a_report_takes_personal_references() -> None:
    assert set(REPORT_REFS) <= set(PERSONAL_FIELDS) and set(REPORT_REFS) <= set(REPORT_DATA)
    fields = {"category": "brann", "place": "B", "what": "Røyk", "inmate_ref": "INN-1"}
    when = "2026-11-22T02:41:07Z"
    raw = report_event(fields, reporter="kari", unit="ringerike", event_id="x", time=when)
    assert validate_event(raw, known_units=UNITS).data["inmate_ref"] == "INN-1"


def _fill(form: EventForm) -> dict[str, Any]:
    """What the board's script sends for a form with every field filled in."""
    sample = {"int": 45, "float": 12.5, "bool": True, "list": ["a"], "text": "A2-114"}
    data: dict[str, Any] = {}
    for f in form.fields:
        if f.kind == "choice":
            data[f.name] = f.choices[0]
        elif f.kind == "datetime":
            data[f.name] = datetime.now(UTC).isoformat()
        else:
            value = sample[f.kind]
            if f.kind in ("int", "float") and f.maximum is not None:
                value = min(value, f.maximum)
            data[f.name] = value
    return {
        "specversion": "1.0",
        "id": "e-1",
        "source": "/users/kari/board",
        "type": form.type,
        "time": datetime.now(UTC).isoformat(),
        "unit": "agder-froland",
        "subject": "agder-froland",
        "datacontenttype": "application/json",
        "data": data,
    }


def test_a_form_per_sensor_type_whose_filled_in_event_is_valid() -> None:
    forms = event_forms()
    sensors = [k.name for k in catalogue.kinds() if k.sensor is not None]
    assert [f.name for f in forms] == sensors and "sensor.breath_absent" in sensors
    for form in forms:
        env = validate_event(_fill(form), known_units=UNITS)
        assert env.type == form.type
        required = {f.name for f in form.fields if f.required}
        assert required == {
            n
            for n, info in catalogue.find(form.name).model.model_fields.items()  # type: ignore[union-attr]
            if info.is_required()
        }
        if required:  # the same form with its required fields left empty is refused
            raw = _fill(form)
            raw["data"] = {k: v for k, v in raw["data"].items() if k not in required}
            with pytest.raises(EventError):
                validate_event(raw, known_units=UNITS)


async def test_report_page_shows_labels_and_sends_the_api_fields(api: ApiHarness) -> None:
    await api.user("kari", "operator", unit="agder-froland")
    async with api.login("kari") as client:
        page = (await client.get("/report")).text
        form = page.split('id="form-report"')[1].split("</form>")[0]
        names = set(re.findall(r'name="([a-z_.]+)"', form))
        assert names == {"unit", "category", "place", "what", "affected", "severity", *REPORT_REFS}
        assert names <= {*REPORT_DATA, "unit"}, "every field is one the API takes"
        option = r'<option value="([^"]+)" data-incident-type="([a-z_]+)">([^<]+)<'
        options = re.findall(option, page)
        assert {html.unescape(v) for v, _, _ in options} == set(REPORT_FORM_CATEGORIES)
        assert "Brann" in {label for _, _, label in options}
        en = (await client.get("/report?lang=en")).text
        assert ">Fire<" in en and ">Hostage-taking<" in en


async def test_event_page_has_a_form_per_sensor_type_and_a_cap_form(api: ApiHarness) -> None:
    await api.user("kari", "operator", unit="agder-froland")
    async with api.login("kari") as client:
        for form in event_forms():
            page = (await client.get(f"/events/new?kind={form.name}")).text
            assert f'data-cloudevent="{form.type}"' in page
            for f in form.fields:
                assert f'name="data.{f.name}"' in page
            assert 'data-api="/api/v1/cap"' in page and 'data-raw="application/cap+xml"' in page
        assert 'name="exercise"' in page and " required" not in page.split('name="exercise"')[1][:3]


@pytest.mark.parametrize("path", ["/report", "/events/new"])
async def test_intake_pages_follow_the_roles_of_the_api(api: ApiHarness, path: str) -> None:
    await api.user("jd", "ministry")
    await api.user("ctl", "exercise-controller")
    async with api.login("jd") as client:
        refused = await client.get(path)
        assert refused.status_code == 403
        assert "/events/new" not in refused.text and 'href="/report"' not in refused.text
    async with api.login("ctl") as client:
        page = (await client.get(path)).text
        assert re.search(r'name="exercise" required', page), "exercise controllers: drills only"
