"""The intake forms in Debian's chromium, through the whole path: the form posts to the API
(``/api/v1/reports``, ``/events``, ``/cap``), Kafka, the worker, the crisis log; each resulting
incident is checked through the API."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.boardserver import BoardServer, run_async, start_board_server
from tests.web.test_board_browser import _login, browser  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.broker]

CAP = Path(__file__).resolve().parents[1] / "data" / "cap" / "met_wind_froland.xml"


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BoardServer]:
    from crisis.kafka import topics
    from crisis.kafka.broker import EmbeddedBroker, ensure_topics
    from tests.worker_harness import envelope, log_tail, spawn_worker, stop, worker_env

    tmp = tmp_path_factory.mktemp("intake")
    url = f"sqlite+aiosqlite:///{tmp / 'board.db'}"
    with EmbeddedBroker(log_path=tmp / "tansu.log") as broker:
        run_async(
            lambda: ensure_topics(
                broker.bootstrap, {topics.EVENTS: 2, topics.EVENTS_DLQ: 1, topics.LOG: 1}
            )
        )
        board = start_board_server(tmp, url, CRISIS_KAFKA_BOOTSTRAP=broker.bootstrap)
        worker = spawn_worker(worker_env(broker.bootstrap, tmp / "var-worker", url), tmp / "w.log")
        try:
            warm = envelope("sensor.door_forced", unit="ringerike", door="D1")
            assert board.api("POST", "/api/v1/events", "kdi", json=warm).status_code == 202
            deadline = time.monotonic() + 90
            while not board.api("GET", "/api/v1/incidents", "kdi").json():
                assert time.monotonic() < deadline, log_tail(tmp / "w.log")
                time.sleep(0.2)
            yield board
        finally:
            stop(worker)
            board.stop()


def _incident(board: BoardServer, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        found = [i for i in board.api("GET", "/api/v1/incidents", "kdi").json() if match(i)]
        if found:
            return dict(found[0])
        assert time.monotonic() < deadline, "no incident from the form"
        time.sleep(0.2)


def _timeline(board: BoardServer, incident_id: str, who: str) -> list[dict[str, Any]]:
    r = board.api("GET", f"/api/v1/incidents/{incident_id}/timeline", who)
    assert r.status_code == 200, r.text
    return list(r.json())


def _find(value: Any, key: str) -> Any:
    """The first value of ``key`` at any depth (an entry carries its source event nested)."""
    if isinstance(value, dict):
        if key in value:
            return value[key]
        value = list(value.values())
    if isinstance(value, list):
        for item in value:
            found = _find(item, key)
            if found is not None:
                return found
    return None


def test_the_report_form_opens_an_incident_of_its_category(
    browser: Any,  # noqa: F811
    pipeline: BoardServer,
) -> None:
    from playwright.sync_api import expect

    page = _login(browser, pipeline, "op", "/report")
    form = page.locator("#form-report")
    form.locator("select[name=category]").select_option("vold og trusler")
    form.locator("input[name=place]").fill("Avdeling C, luftegård")
    form.locator("textarea[name=what]").fill("Innsatt slo betjent etter telefonsamtale.")
    form.locator("input[name=affected]").fill("1 betjent")
    form.locator("select[name=severity]").select_option("4")
    form.locator("input[name=inmate_ref]").fill("INN-7731")
    form.locator("button").click()
    expect(form.locator(".form-ok")).to_contain_text("Mottatt")
    expect(form.locator(".form-errors")).to_be_empty()
    incident = _incident(pipeline, lambda i: "luftegård" in i["title"])
    assert incident["type"] == "violence_threat" and incident["severity"] == 4
    assert incident["unit"] == "agder-froland"
    entries = _timeline(pipeline, incident["id"], "op")
    assert _find(entries, "inmate_ref") == "INN-7731" and _find(entries, "reporter") == "op"
    masked = _find(_timeline(pipeline, incident["id"], "komm"), "inmate_ref")
    assert masked and masked != "INN-7731", "masked by need-to-know"
    page.context.close()


def test_a_sensor_event_posted_by_hand_opens_its_incident(
    browser: Any,  # noqa: F811
    pipeline: BoardServer,
) -> None:
    from playwright.sync_api import expect

    page = _login(browser, pipeline, "op", "/events/new")
    page.locator(".kind-menu a[href$='sensor.breath_absent']").click()
    expect(page.locator("#event-kind")).to_contain_text("Pustesensor")
    form = page.locator("#form-event")
    form.locator("input[name='data.cell']").fill("C3-201")
    form.locator("input[name='data.seconds_without_breath']").fill("50")
    form.locator("button").click()
    expect(form.locator(".form-result")).to_contain_text("Mottatt (202)")
    incident = _incident(pipeline, lambda i: "C3-201" in i["title"])
    assert incident["type"] == "breath_motion_absent" and incident["severity"] == 5
    entries = _timeline(pipeline, incident["id"], "op")
    assert _find(entries, "source") == "/users/op/board", "posted by hand, by whom"
    assert _find(entries, "event_type") == "sensor.breath_absent"
    # a unit outside the operator's scope is the API's 403, shown at the form
    page.evaluate(
        "() => { const s = document.querySelector('#form-event select[name=unit]');"
        " s.add(new Option('Ringerike', 'ringerike')); s.value = 'ringerike'; }"
    )
    form.locator("input[name='data.cell']").fill("R1-001")
    form.locator("button").click()
    expect(form.locator(".form-errors")).to_contain_text("out of scope")
    page.context.close()


def test_a_pasted_cap_warning_shows_the_apis_errors_then_opens_an_incident(
    browser: Any,  # noqa: F811
    pipeline: BoardServer,
) -> None:
    from playwright.sync_api import expect

    page = _login(browser, pipeline, "op", "/events/new")
    form = page.locator("#form-cap")
    form.locator("textarea[name=xml]").fill("<alert>not CAP</alert>")
    form.locator("button").click()
    expect(form.locator(".form-errors .form-error").first).to_be_visible()
    assert form.locator(".form-result").inner_text() == ""
    form.locator("textarea[name=xml]").fill(CAP.read_text())
    form.locator("button").click()
    expect(form.locator(".form-result")).to_contain_text("agder-froland")
    expect(form.locator(".form-errors")).to_be_empty()
    incident = _incident(pipeline, lambda i: i["type"] == "extreme_weather")
    assert incident["unit"] == "agder-froland"
    assert re.search(r"vindkast", incident["title"], re.IGNORECASE)
    page.context.close()
