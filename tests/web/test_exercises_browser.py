"""The controller's page in a real browser, over the real broker and stream worker: start the
demo scenario from /exercises, fire a manual inject, pause (the inject counter stops), resume
(the script moves on by itself, without a reload), end; then nothing of the exercise is on
the overview and its incidents are closed."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crisis.kafka import topics
from crisis.kafka.broker import EmbeddedBroker, ensure_topics
from tests.boardserver import BoardServer, run_async, start_board_server
from tests.web.test_board_browser import ARGS, CHROMIUM, _browser_missing, _keep, _login
from tests.worker_harness import log_tail, spawn_worker, stop, worker_env

pytestmark = [pytest.mark.browser, pytest.mark.broker, pytest.mark.slow]

SPEED = 2  # the two-minute demo in a minute: injects due at 0, 10, 20 and 30 s wall time
USERS = [
    ("ovingsleder", "exercise-controller", None, None),
    ("sjef", "admin", None, None),
    ("op", "operator", "agder-froland", None),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = _browser_missing()
    if reason:
        if os.environ.get("CRISIS_REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser tests are mandatory here (CRISIS_REQUIRE_BROWSER=1): {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def system(tmp_path: Path) -> Iterator[BoardServer]:
    """Broker, one stream worker (ingest and reactions) and the web server with the runner."""
    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as broker:
        run_async(
            lambda: ensure_topics(
                broker.bootstrap,
                {topics.EVENTS: 2, topics.EVENTS_DLQ: 1, topics.LOG: 1, topics.NOTIFICATIONS: 1},
            )
        )
        url = f"sqlite+aiosqlite:///{tmp_path / 'board.db'}"
        server = start_board_server(
            tmp_path, url, users=USERS, CRISIS_KAFKA_BOOTSTRAP=broker.bootstrap
        )
        worker = spawn_worker(
            worker_env(broker.bootstrap, tmp_path / "var", url), tmp_path / "worker.log"
        )
        try:
            yield server
        except Exception:
            print(log_tail(tmp_path / "worker.log"), server.output())
            raise
        finally:
            stop(worker)
            server.stop()


def _exercise(board: BoardServer, exercise_id: str) -> dict[str, Any]:
    r = board.api("GET", f"/api/v1/exercises/{exercise_id}", "ovingsleder")
    assert r.status_code == 200, r.text
    return dict(r.json())


def _incidents(board: BoardServer, exercise_id: str) -> list[dict[str, Any]]:
    r = board.api("GET", f"/api/v1/incidents?exercise={exercise_id}", "sjef")
    assert r.status_code == 200, r.text
    return list(r.json())


def _sent(page: Any) -> int:
    return int(page.locator("#ex-sent").inner_text())


def test_the_controller_page_runs_the_demo_and_leaves_nothing_on_the_board(
    browser: Any, system: BoardServer, tmp_path: Path
) -> None:
    board = system
    page = _login(browser, board, "ovingsleder", "/exercises")
    page.select_option("#start-form select[name=scenario]", "demo-kort")
    page.fill("#start-form input[name=speed]", str(SPEED))
    page.fill("#start-form input[name=id]", "ovelse-nettleser")
    page.click("#start-form button")
    page.wait_for_url(re.compile(r"/exercises/ovelse-nettleser$"))
    assert page.locator("#exercise-banner").is_visible()
    assert page.locator("#ex-state").inner_text() == "pågår"

    # The first inject is sent by the runner and shows up without a reload.
    page.locator('[data-inject="brannalarm"][data-state="sent"]').wait_for(timeout=15_000)

    before = _sent(page)
    page.select_option("#manual-type", "text")
    page.fill("#manual-fields", 'text: "Les opp: strømmen er borte i avdeling B."\n')
    page.click("#form-manual button")
    page.locator("#inject-table").get_by_text("strømmen er borte", exact=False).wait_for()
    assert _sent(page) == before + 1

    page.click("#form-pause button")
    page.locator("#ex-state", has_text="pause").wait_for()
    paused = _exercise(board, "ovelse-nettleser")
    pending = [i for i in paused["injects"] if i["state"] == "pending"]
    assert pending, "the pause comes before the script's end"
    counter = _sent(page)
    assert counter == paused["progress"]["injects"]["sent"]
    # Longer than the next inject would take while running: nothing is sent.
    waiting = (pending[0]["due_offset_seconds"] - paused["progress"]["scenario_seconds"]) / SPEED
    time.sleep(min(max(waiting, 0) + 2.0, 14.0))
    assert _sent(page) == counter
    assert _exercise(board, "ovelse-nettleser")["progress"]["injects"]["sent"] == counter

    page.click("#form-resume button")
    page.locator("#ex-state", has_text="pågår").wait_for()
    # The last scripted inject turns "sent" on this very page: polled, not reloaded.
    page.evaluate("window.notReloaded = true")
    page.locator('[data-inject="ny-alarm"][data-state="sent"]').wait_for(timeout=40_000)
    assert page.evaluate("window.notReloaded === true")
    assert _sent(page) > counter
    shot = tmp_path / "exercise-controller.png"
    page.screenshot(path=str(shot), full_page=True)
    _keep(shot)

    deadline = time.monotonic() + 30
    while not _incidents(board, "ovelse-nettleser") and time.monotonic() < deadline:
        time.sleep(0.3)
    opened = _incidents(board, "ovelse-nettleser")
    assert opened, "the fire alarm opened an exercise incident"

    overview = _login(browser, board, "op", "/")
    assert overview.locator("#exercise-banner").is_visible()
    assert overview.locator(f'[data-incident="{opened[0]["id"]}"]').count() >= 1

    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#form-end button")
    page.locator("#ex-state", has_text="avsluttet").wait_for()
    assert _exercise(board, "ovelse-nettleser")["state"] == "ended"

    overview.goto(board.base + "/")
    assert overview.locator("#exercise-banner").count() == 0
    closed = _incidents(board, "ovelse-nettleser")
    assert closed and all(i["status"] == "closed" for i in closed)
    for incident in closed:
        assert overview.locator(f'[data-incident="{incident["id"]}"]').count() == 0
        assert incident["id"] not in overview.content()
