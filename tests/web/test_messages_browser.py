"""Notifications from the board in Debian's chromium: approve a held message (two people),
cancel a delivered one, retry a failed delivery, confirm an alarm on a phone, and the local
inbox. Each result is checked through the API.

Uses the board tests' fixtures (mandatory under ``CRISIS_REQUIRE_BROWSER=1``, skipped with
the reason elsewhere). Deliveries are made by a real dispatcher on the server's database.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from crisis.clock import utcnow
from crisis.store.db import make_engine, make_sessionmaker
from notifiers.config import NotifyConfig, load_notify_config, parse_notify_config
from notifiers.dispatcher import Dispatcher
from notifiers.models import OutboxMessage
from tests.boardserver import BoardServer, run_async, start_board_server
from tests.web.test_board_browser import _login, _open, board, browser  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

FACTS = {"title": "Brann i verksted", "known": "Røyk i verkstedet.", "actions": "Evakuert."}
FAILING = """
version: 1
delivery: {attempts_per_contact: 1, backoff_seconds: 0.01}
people:
  - {id: down, name: Nede (test), contacts: [{channel: sms, url: "json://127.0.0.1:9/x?cto=1"}]}
  - {id: up, name: Oppe (test), contacts: [{channel: sms, url: "inbox://up/sms"}]}
groups:
  - {id: g-staff, kind: staff, unit: agder-froland, members: [down, up]}
"""


def _url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'board.db'}"


def _request(server: BoardServer, incident: str, **kw: Any) -> str:
    body = {
        "incident_id": incident,
        "groups": ["staff"],
        "facts": FACTS,
        "next_update_at": (utcnow() + timedelta(minutes=30)).isoformat(),
        **kw,
    }
    r = server.api("POST", "/api/v1/notifications/updates", "op", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _dispatch(url: str, config: NotifyConfig) -> None:
    async def go() -> None:
        engine = make_engine(url)
        d = Dispatcher(make_sessionmaker(engine), config)
        try:
            while await d.run_once():
                pass
        finally:
            await d.aclose()
            await engine.dispose()

    run_async(go)


def _ack_code(url: str, update_id: str, recipient: str) -> str:
    async def go() -> str:
        engine = make_engine(url)
        try:
            async with make_sessionmaker(engine)() as session:
                row = (
                    await session.exec(
                        select(OutboxMessage).where(
                            OutboxMessage.update_id == update_id,
                            OutboxMessage.recipient == recipient,
                        )
                    )
                ).one()
                assert row.ack_code
                return row.ack_code
        finally:
            await engine.dispose()

    return run_async(go)


def _messages(server: BoardServer, update_id: str) -> dict[str, str]:
    r = server.api("GET", f"/api/v1/notifications/updates/{update_id}", "op")
    return {m["recipient"]: m["status"] for m in r.json()["messages"]}


def _timeline(server: BoardServer, incident: str) -> list[dict[str, Any]]:
    return list(server.api("GET", f"/api/v1/incidents/{incident}/timeline", "op").json())


def test_a_held_message_is_refused_to_its_author_and_approved_by_a_second_person(
    browser: Any,  # noqa: F811
    board: BoardServer,  # noqa: F811
) -> None:
    from playwright.sync_api import expect

    incident = _open(board, title="Brann i verksted", type="fire")["id"]
    update = _request(board, incident, groups=["staff", "families"])
    path = f"/incidents/{incident}/messages"

    page = _login(browser, board, "op", path)
    held = page.locator(f'.msg-held[data-update="{update}"]')
    expect(held).to_contain_text("Venter på godkjenning")
    expect(held.locator(".msg-self")).to_be_visible()
    held.locator("button").click()
    expect(held.locator(".refusal")).to_contain_text("to-personsregel")
    assert (
        board.api("GET", f"/api/v1/notifications/updates/{update}", "op").json()["approved_by"]
        is None
    )
    page.context.close()

    page = _login(browser, board, "kdi", path)
    held = page.locator(f'.msg-held[data-update="{update}"]')
    expect(held.locator(".msg-self")).to_have_count(0)
    held.locator("button").click()
    expect(page.locator(".msg-held")).to_have_count(0)
    got = board.api("GET", f"/api/v1/notifications/updates/{update}", "op").json()
    assert got["approved_by"] == "user:kdi"
    approved = [e for e in _timeline(board, incident) if e["data"].get("approved_by")]
    assert approved and approved[0]["data"]["group"] == "families"
    assert approved[0]["data"]["status"] == "queued"
    page.context.close()


def test_a_delivered_message_is_cancelled_and_the_inbox_shows_the_alarm(
    browser: Any,  # noqa: F811
    board: BoardServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect

    incident = _open(board, title="Brann i verksted", type="fire")["id"]
    update = _request(board, incident, kind="alarm")
    _dispatch(_url(tmp_path), load_notify_config(None))  # the shipped demo file: the inbox
    assert set(_messages(board, update).values()) == {"sent"}

    page = _login(browser, board, "op", "/inbox")
    item = page.locator(f'[data-recipient="espen-braten"] .inbox-item[data-update="{update}"]')
    expect(item).to_have_count(1)
    expect(item).to_contain_text("levert")
    expect(item.locator(".inbox-body")).to_contain_text("Bekreft: svar")

    page.goto(board.base + f"/incidents/{incident}/messages")
    line = page.locator(f'.msg-update[data-update="{update}"] .msg-line[data-group="staff"]')
    expect(line).to_have_attribute("data-worst", "sent")
    expect(line).to_contain_text("4 levert")
    box = page.locator(f'.msg-update[data-update="{update}"] details.msg-correct')
    box.locator("summary").click()
    box.locator('textarea[name="facts.known"]').fill("Falsk alarm: det brant ikke.")
    box.locator('textarea[name="facts.actions"]').fill("Ingen tiltak.")
    box.locator('input[name="next_update_at"]').fill(
        (utcnow() + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")
    )
    box.locator('input[name="cancel"]').check()
    box.locator("button").click()
    expect(page.locator('.msg-update[data-kind="cancellation"]')).to_have_count(1)
    cancelled = [
        e["data"] for e in _timeline(board, incident) if e["data"].get("kind") == "cancellation"
    ]
    assert {d["recipient"] for d in cancelled} == set(_messages(board, update))
    assert {d["status"] for d in cancelled} == {"queued"}
    page.context.close()


@pytest.fixture
def failing_board(tmp_path: Path) -> Iterator[BoardServer]:
    path = tmp_path / "failing.yaml"
    path.write_text(FAILING, encoding="utf-8")
    server = start_board_server(tmp_path, _url(tmp_path), CRISIS_NOTIFY_CONFIG=str(path))
    try:
        yield server
    finally:
        server.stop()


def test_a_failed_delivery_is_retried_from_the_board(
    browser: Any,  # noqa: F811
    failing_board: BoardServer,
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect

    board = failing_board  # noqa: F811
    incident = _open(board, title="Brann i verksted", type="fire")["id"]
    update = _request(board, incident)
    _dispatch(_url(tmp_path), parse_notify_config(FAILING, "failing.yaml"))
    assert _messages(board, update) == {"down": "failed", "up": "sent"}

    page = _login(browser, board, "op", f"/incidents/{incident}/messages")
    line = page.locator(f'.msg-update[data-update="{update}"] .msg-line[data-group="staff"]')
    expect(line).to_have_attribute("data-worst", "failed")
    expect(line).to_contain_text("1 feilet")
    line.locator("form.msg-retry button").click()
    expect(line.locator("form.msg-retry")).to_have_count(0)
    expect(page.locator('.msg-line[data-group="staff"]')).to_have_attribute("data-worst", "queued")
    assert _messages(board, update) == {"down": "pending", "up": "sent"}
    last = _timeline(board, incident)[-1]["data"]
    assert (last["recipient"], last["status"], last["retried_by"]) == ("down", "queued", "user:op")
    page.context.close()


def test_an_alarm_is_confirmed_by_its_recipient_on_a_phone(
    browser: Any,  # noqa: F811
    board: BoardServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect

    incident = _open(board, title="Pust- og bevegelsesalarm A2-114", type="fire")["id"]
    update = _request(board, incident, kind="alarm")
    _dispatch(_url(tmp_path), load_notify_config(None))
    code = _ack_code(_url(tmp_path), update, "espen-braten")

    phone = browser.new_context(
        viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True, locale="nb-NO"
    )
    page = phone.new_page()
    page.goto(board.base + f"/api/v1/notifications/ack/{code}")
    expect(page.locator("#group")).to_contain_text("ansatte")
    button = page.locator("#confirm")
    box = button.bounding_box()
    assert box is not None and box["height"] >= 48 and box["width"] >= 300, box
    wide = page.evaluate("() => document.documentElement.scrollWidth")
    assert wide <= 360, f"horizontal scroll: page is {wide} px wide"
    button.tap()
    expect(page.locator("#confirmed")).to_contain_text("Bekreftet")
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 360
    assert _messages(board, update)["espen-braten"] == "acknowledged"
    acked = [
        e["data"] for e in _timeline(board, incident) if e["data"].get("status") == "acknowledged"
    ]
    assert len(acked) == 1 and acked[0]["via"] == "link"
    assert acked[0]["acknowledged_by"] == "recipient:espen-braten"
    phone.close()
