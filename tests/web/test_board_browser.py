"""The board in a real browser: Debian's chromium driven by Playwright, a real uvicorn server.

Mandatory in CI (``CRISIS_REQUIRE_BROWSER=1``, set by ``.ci/run``): a missing chromium or
Playwright fails there, and is skipped with the reason elsewhere. Screenshots of the overview
and an incident page are written to ``<tmp>/screenshots/`` (and ``var/screenshots/`` when
``CRISIS_SCREENSHOT_DIR`` names another place).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from crisis.log.append import append
from crisis.store.db import make_engine, make_sessionmaker
from tests.boardserver import PASSWORD, BoardServer, run_async, start_board_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LIVE_MS = 2000  # "appears on the open board within 2 s without reload"


def _browser_missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is not installed (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the Python playwright package is not installed (dev extras)"
    return None


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
def board(tmp_path: Path) -> Iterator[BoardServer]:
    server = start_board_server(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'board.db'}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    path = tmp_path / "screenshots"
    path.mkdir()
    return path


def _keep(shot: Path) -> None:
    target = os.environ.get("CRISIS_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(target) / shot.name)


def _open(board: BoardServer, who: str = "op", **over: Any) -> dict[str, Any]:
    body = {
        "type": "personal_alarm",
        "title": "Personalarm utløst, avdeling A",
        "unit": "agder-froland",
        "severity": 4,
        **over,
    }
    r = board.api("POST", "/api/v1/incidents", who, json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _entry(board: BoardServer, incident_id: str, **body: Any) -> dict[str, Any]:
    r = board.api("POST", f"/api/v1/incidents/{incident_id}/entries", "op", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _login(browser: Any, board: BoardServer, name: str, path: str = "/") -> Any:
    context = browser.new_context(viewport={"width": 1600, "height": 1000}, locale="nb-NO")
    page = context.new_page()
    page.goto(board.base + path)
    page.wait_for_url(re.compile(r"/login"))
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", "wrong password")
    page.click("button[type=submit]")
    page.locator("#login-form .form-errors").filter(has_text="feil brukernavn").wait_for()
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(re.escape(board.base + path) + r"$"))
    return page


def _live(page: Any) -> None:
    # A function, not an expression: polling an expression needs eval, which the CSP refuses.
    page.wait_for_function(
        "() => window.crisisBoard && window.crisisBoard.connected()", timeout=15_000
    )


def test_login_then_overview_with_map_and_english_switch(
    browser: Any, board: BoardServer, shots: Path
) -> None:
    from playwright.sync_api import expect

    _open(board)
    _open(board, "kdi", title="Brann i verksted", type="fire", severity=5, unit="ringerike")
    _open(board, title="Uteblivelse fra permisjon", type="leave", severity=2)
    page = _login(browser, board, "kdi")
    expect(page.locator("h1")).to_contain_text("Åpne hendelser")
    expect(page.locator(".incident-row")).to_have_count(3)
    # worst first, and the map colours Ringerike by its severity-5 incident
    expect(page.locator(".incident-row").first).to_contain_text("Brann i verksted")
    expect(page.locator('circle[data-unit="ringerike"]')).to_have_class(re.compile("sev5"))
    expect(page.locator('circle[data-unit="agder-froland"]')).to_have_class(re.compile("sev4"))
    expect(page.locator('circle[data-unit="trondheim"]')).to_have_class(re.compile("sev0"))
    # times in Oslo, UTC on hover
    assert "UTC" in (page.locator("td time").first.get_attribute("title") or "")
    _live(page)
    shot = shots / "overview.png"
    page.screenshot(path=str(shot))
    _keep(shot)
    page.goto(board.base + "/?lang=en")
    expect(page.locator("h1")).to_contain_text("Open incidents")
    page.goto(board.base + "/")  # the cookie remembers the choice
    expect(page.locator("h1")).to_contain_text("Open incidents")
    page.context.close()


def test_a_posted_entry_and_a_new_incident_appear_live_without_reload(
    browser: Any, board: BoardServer, shots: Path
) -> None:
    from playwright.sync_api import expect

    incident = _open(board)
    page = _login(browser, board, "op", f"/incidents/{incident['id']}")
    _live(page)
    page.evaluate("window.__marker = 'no reload'")
    _entry(board, incident["id"], kind="observation", text="Innsatt funnet uskadd på celle A2-114")
    expect(page.locator("#timeline")).to_contain_text("funnet uskadd", timeout=LIVE_MS)
    _entry(
        board,
        incident["id"],
        kind="task",
        title="Kontroller celle A2-114",
        responsible_role="on_duty",
        deadline="2026-11-22T05:00:00Z",
        checklist=["Tilsyn", "Meld tilbake"],
    )
    expect(page.locator("#panel-tasks")).to_contain_text("Kontroller celle A2-114", timeout=LIVE_MS)
    board.receipt(
        incident["id"],
        "SMS til ansatte",
        update_id="u1",
        group="staff",
        recipient="+4740000001",
        channel="sms",
        status="failed",
        attempt=1,
        error="gateway timeout",
    )
    line = page.locator('#panel-notifications .msg-line[data-group="staff"]')
    expect(line).to_have_attribute("data-worst", "failed", timeout=LIVE_MS)
    expect(line).to_contain_text("1 feilet")
    promised = (datetime.now(UTC) + timedelta(minutes=90)).strftime("%Y-%m-%dT%H:%M:%SZ")
    _entry(
        board,
        incident["id"],
        kind="observation",
        text="Neste oppdatering lovet",
        next_update_at=promised,
    )
    expect(page.locator("#countdown")).to_have_attribute(
        "data-countdown", re.compile(promised[:16]), timeout=LIVE_MS
    )
    expect(page.locator("#countdown")).to_have_text(re.compile(r"^om 1:(29|30):\d\d$"))
    assert page.evaluate("window.__marker") == "no reload"
    shot = shots / "incident.png"
    page.screenshot(path=str(shot), full_page=True)
    _keep(shot)

    page.goto(board.base + "/")
    _live(page)
    _open(board, title="Røykutvikling i kjøkken", type="fire", severity=3)
    expect(page.locator("#overview-body")).to_contain_text("Røykutvikling", timeout=LIVE_MS)
    page.context.close()


def test_exercise_incident_shows_an_unmistakable_banner(
    browser: Any, board: BoardServer, shots: Path
) -> None:
    from playwright.sync_api import expect

    real = _open(board)
    drill = _open(board, title="Brann i avdeling B", type="fire", exercise="ovelse-2026-11-brann")
    _open(board, "kdi", title="Gisseløvelse", type="hostage", unit="ringerike", exercise="ov-2")
    page = _login(browser, board, "op", f"/incidents/{drill['id']}")
    banner = page.locator("#exercise-banner")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("ØVELSE")
    assert "exercise-mode" in (page.locator("body").get_attribute("class") or "")
    expect(page.locator("#incident-title")).to_contain_text("ØVELSE")
    shot = shots / "exercise-incident.png"
    page.screenshot(path=str(shot))
    _keep(shot)
    page.goto(board.base + f"/incidents/{real['id']}")
    expect(page.locator("#exercise-banner")).to_have_count(0)
    page.goto(board.base + "/")
    expect(page.locator(f'tr[data-incident="{drill["id"]}"]')).to_have_class(re.compile("exercise"))
    expect(page.locator(f'tr[data-incident="{real["id"]}"]')).not_to_have_class(
        re.compile("exercise")
    )
    expect(page.locator("#exercise-banner")).to_be_visible()
    # the map dot of a unit with only exercises is purple, a real incident outranks it
    expect(page.locator('circle[data-unit="agder-froland"]')).not_to_have_class(
        re.compile("exercise")
    )
    page.context.close()
    page = _login(browser, board, "kdi")
    expect(page.locator('circle[data-unit="ringerike"]')).to_have_class(re.compile("exercise"))
    page.click('a:has(circle[data-unit="agder-froland"])')
    expect(page.locator(".incident-row")).to_have_count(2)
    page.context.close()


def test_coercive_decision_without_legal_basis_shows_the_error_and_records_nothing(
    browser: Any, board: BoardServer
) -> None:
    from playwright.sync_api import expect

    incident = _open(board)
    page = _login(browser, board, "op", f"/incidents/{incident['id']}")
    page.locator("details:has(#form-decision) > summary").click()
    form = page.locator("#form-decision")
    form.locator("textarea[name=text]").fill("Avdeling A låses ned")
    form.locator("select[name=measure]").select_option("innelasing")
    form.locator("textarea[name=proportionality]").fill("Nødvendig for å sikre ansatte")
    form.locator("textarea[name=alternatives]").fill("Økt bemanning vurdert")
    form.locator("button").click()
    errors = form.locator(".form-errors")
    expect(errors).to_contain_text("legal_basis")
    expect(form.locator("input[name=legal_basis]")).to_have_attribute("aria-invalid", "true")
    timeline = board.api("GET", f"/api/v1/incidents/{incident['id']}/timeline", "op").json()
    assert [e["kind"] for e in timeline] == ["incident_opened"]
    # with the legal basis it is recorded and shown
    form.locator("input[name=legal_basis]").fill("straffegjennomføringsloven § 37")
    form.locator("button").click()
    expect(page.locator("#panel-decisions")).to_contain_text("Avdeling A låses ned", timeout=5000)
    timeline = board.api("GET", f"/api/v1/incidents/{incident['id']}/timeline", "op").json()
    decision = [e for e in timeline if e["kind"] == "decision"]
    assert len(decision) == 1 and decision[0]["data"]["legal_basis"].endswith("§ 37")

    # escalation: skipping a level is refused with the principle named; one level is recorded
    page.locator("details:has(#form-escalate) > summary").click()
    esc = page.locator("#form-escalate")
    esc.locator("select[name=to]").select_option("kdi")
    esc.locator("textarea[name=reason]").fill("Behov for nasjonal støtte")
    esc.locator("textarea[name=criteria]").fill("flere skadde\nmediepress")
    esc.locator("button").click()
    expect(esc.locator(".form-errors")).to_contain_text("nærhetsprinsippet")
    esc.locator("select[name=to]").select_option("region")
    esc.locator("button").click()
    expect(page.locator("#timeline")).to_contain_text(
        "Eskalert fra enhetsnivå til regionnivå", timeout=5000
    )
    timeline = board.api("GET", f"/api/v1/incidents/{incident['id']}/timeline", "op").json()
    escalations = [e for e in timeline if e["kind"] == "escalation"]
    assert len(escalations) == 1
    assert escalations[0]["data"]["criteria"] == ["flere skadde", "mediepress"]
    page.context.close()


def _write_directly(url: str, incident_id: str, texts: list[str]) -> None:
    """Another process writing to the log while the web server is down."""

    async def go() -> None:
        engine = make_engine(url)
        try:
            async with make_sessionmaker(engine)() as session:
                for text in texts:
                    await append(
                        session,
                        incident_id=incident_id,
                        kind="observation",
                        actor="system:test",
                        text=text,
                    )
                await session.commit()
        finally:
            await engine.dispose()

    run_async(go)


def test_a_dropped_websocket_reconnects_without_losing_entries(
    browser: Any, board: BoardServer, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    incident = _open(board)
    page = _login(browser, board, "op", f"/incidents/{incident['id']}")
    _live(page)
    # 1: the socket is closed from the page; entries written meanwhile arrive on reconnect
    page.evaluate("window.crisisBoard.pause()")
    page.wait_for_function("() => !window.crisisBoard.connected()")
    for n in range(3):
        _entry(board, incident["id"], kind="observation", text=f"Mens frakoblet {n}")
    page.wait_for_timeout(300)
    assert page.locator("#timeline").inner_text().count("Mens frakoblet") == 0
    page.evaluate("window.crisisBoard.resume()")
    for n in range(3):
        expect(page.locator("#timeline")).to_contain_text(f"Mens frakoblet {n}", timeout=5000)
    # 2: the server restarts; another process writes while it is down
    board.stop()
    _write_directly(
        f"sqlite+aiosqlite:///{tmp_path / 'board.db'}",
        incident["id"],
        ["Under omstart 1", "Under omstart 2"],
    )
    board.start()
    for text in ("Under omstart 1", "Under omstart 2"):
        expect(page.locator("#timeline")).to_contain_text(text, timeout=20_000)
    _live(page)
    _entry(board, incident["id"], kind="observation", text="Etter omstart")
    expect(page.locator("#timeline")).to_contain_text("Etter omstart", timeout=LIVE_MS)
    ids = page.eval_on_selector_all("#timeline li", "els => els.map(e => e.dataset.id)")
    assert len(ids) == len(set(ids)) == 1 + 3 + 2 + 1, ids
    page.context.close()


def test_ministry_cannot_open_an_unapproved_report_and_reads_the_approved_one(
    browser: Any, board: BoardServer
) -> None:
    from playwright.sync_api import expect

    incident = _open(board)
    _entry(board, incident["id"], kind="observation", text="Situasjonen er under kontroll")
    r = board.api("POST", f"/api/v1/incidents/{incident['id']}/sitreps", "op")
    assert r.status_code == 201, r.text
    sitrep = r.json()
    ministry = _login(browser, board, "jd")
    expect(ministry.locator("#ministry-reports")).to_have_count(0)
    response = ministry.goto(board.base + f"/sitreps/{sitrep['id']}")
    assert response is not None and response.status == 404
    assert "Situasjonen er under kontroll" not in ministry.content()
    response = ministry.goto(board.base + f"/incidents/{incident['id']}")
    assert response is not None and response.status == 403
    # the accountable operator approves it in the browser
    op = _login(browser, board, "op", f"/sitreps/{sitrep['id']}")
    op.locator("textarea[name=needs]").fill("Behov for forsterkning fra region sørvest")
    op.locator("#form-sitrep-version button").click()
    expect(op.locator(".versions li")).to_have_count(2)
    op.locator("#form-sitrep-approve button").click()
    expect(op.locator("#sitrep-status")).to_contain_text("Godkjent")
    ministry.goto(board.base + "/")
    expect(ministry.locator("#ministry-reports")).to_contain_text("Personalarm")
    # Follow the link's address rather than clicking: the list is re-rendered by live updates
    # (the approval's own entries), and a click could land on the element being replaced.
    link = ministry.locator("#ministry-reports a").first
    expect(link).to_have_attribute("href", f"/sitreps/{sitrep['id']}")
    ministry.goto(board.base + str(link.get_attribute("href")))
    expect(ministry.locator(".sitrep-view")).to_contain_text("forsterkning fra region sørvest")
    expect(ministry.locator(".sitrep-view")).to_contain_text("under kontroll")
    op.context.close()
    ministry.context.close()


@pytest.mark.broker
def test_an_event_posted_to_the_api_appears_on_the_open_board(
    browser: Any, tmp_path: Path, shots: Path
) -> None:
    """The whole path: POST /api/v1/events → Kafka → worker → crisis log → websocket → page."""
    import time

    from playwright.sync_api import expect

    from crisis.kafka import topics
    from crisis.kafka.broker import EmbeddedBroker, ensure_topics
    from tests.worker_harness import envelope, log_tail, spawn_worker, stop, worker_env

    url = f"sqlite+aiosqlite:///{tmp_path / 'board.db'}"
    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as broker:
        run_async(
            lambda: ensure_topics(
                broker.bootstrap, {topics.EVENTS: 2, topics.EVENTS_DLQ: 1, topics.LOG: 1}
            )
        )
        board = start_board_server(tmp_path, url, CRISIS_KAFKA_BOOTSTRAP=broker.bootstrap)
        worker = spawn_worker(
            worker_env(broker.bootstrap, tmp_path / "var-worker", url), tmp_path / "worker.log"
        )
        try:
            # Warm up: the worker's group join takes seconds; the 2 s promise starts after.
            warm = envelope("sensor.door_forced", unit="agder-froland", door="D1")
            assert board.api("POST", "/api/v1/events", "kdi", json=warm).status_code == 202
            deadline = time.monotonic() + 90
            while not board.api("GET", "/api/v1/incidents", "kdi").json():
                assert time.monotonic() < deadline, log_tail(tmp_path / "worker.log")
                time.sleep(0.2)
            page = _login(browser, board, "op", "/")
            _live(page)
            page.evaluate("window.__marker = 'no reload'")
            alarm = envelope(
                "sensor.breath_absent",
                unit="agder-froland",
                cell="A2-114",
                seconds_without_breath=45,
            )
            posted = board.api("POST", "/api/v1/events", "op", json=alarm)
            assert posted.status_code == 202, posted.text
            expect(page.locator("#overview-body")).to_contain_text("A2-114", timeout=LIVE_MS)
            assert page.evaluate("window.__marker") == "no reload"
            shot = shots / "overview-live-event.png"
            page.screenshot(path=str(shot), full_page=True)
            _keep(shot)
            page.context.close()
        finally:
            stop(worker)
            board.stop()


def test_the_login_form_shows_a_throttled_login_in_norwegian_and_english(
    browser: Any, tmp_path: Path
) -> None:
    """The page's script and a browser without script both show the 429, never raw JSON."""
    server = start_board_server(
        tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'board.db'}", CRISIS_LOGIN_MAX_FAILURES="1"
    )
    try:
        for script in (True, False):
            context = browser.new_context(locale="nb-NO", java_script_enabled=script)
            page = context.new_page()
            page.goto(server.base + "/login")
            errors = page.locator("#login-form .form-errors")
            for password, shown in (
                ("wrong password", "feil brukernavn eller passord / wrong username"),
                (PASSWORD, "for mange mislykkede innlogginger"),
            ):
                page.fill("input[name=username]", "op" if script else "kdi")
                page.fill("input[name=password]", password)
                page.click("button[type=submit]")
                errors.filter(has_text=shown).wait_for()
            assert "too many failed logins; try again in" in errors.inner_text()
            assert "{" not in page.locator("body").inner_text()
            context.close()
    finally:
        server.stop()


def test_closing_an_incident_from_its_page_makes_it_read_only_until_reopened(
    browser: Any, board: BoardServer, shots: Path
) -> None:
    from playwright.sync_api import expect

    incident = _open(board)
    other = _open(board, title="Uteblivelse fra permisjon", type="leave", severity=2)
    url = f"/api/v1/incidents/{incident['id']}"
    page = _login(browser, board, "op", f"/incidents/{incident['id']}")
    expect(page.locator("#countdown")).to_have_count(1)
    page.locator("details:has(#form-close) > summary").click()
    form = page.locator("#form-close")
    form.locator("textarea[name=reason]").fill("Alarmen var utløst ved en feil")
    form.locator("textarea[name=final_situation]").fill("Avdeling A i normal drift")
    form.locator("button").click()
    expect(page.locator("#closed-box")).to_contain_text("Avdeling A i normal drift", timeout=5000)
    expect(page.locator("#closed-by")).to_have_text("user:op")
    assert "UTC" in (page.locator("#closed-box time").get_attribute("title") or "")
    got = board.api("GET", url, "op").json()
    assert got["status"] == "closed" and got["closed_at"]
    # read-only: the reopen form is the only writing form left (the log's filter reads), no
    # countdown
    forms = page.locator("main form[data-api]").evaluate_all("fs => fs.map(f => f.id)")
    assert forms == ["form-reopen"]
    expect(page.locator("#countdown")).to_have_count(0)
    shot = shots / "incident-closed.png"
    page.screenshot(path=str(shot))
    _keep(shot)
    page.goto(board.base + "/")
    expect(page.locator(".incident-row")).to_have_count(1)
    expect(page.locator(f'.incident-row[data-incident="{other["id"]}"]')).to_have_count(1)
    # reopened by the form on the closed page: the forms are back
    page.goto(board.base + f"/incidents/{incident['id']}")
    page.locator("#form-reopen textarea[name=reason]").fill("Ny alarm i samme avdeling")
    page.locator("#form-reopen button").click()
    expect(page.locator("#form-close")).to_have_count(1, timeout=5000)
    expect(page.locator("#form-entry")).to_have_count(1)
    assert board.api("GET", url, "op").json()["status"] == "open"
    page.context.close()
