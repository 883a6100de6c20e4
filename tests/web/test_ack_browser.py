"""The confirmation link in a real browser: opening it confirms nothing, the button does.

Uses the board tests' chromium and server fixtures (mandatory under ``CRISIS_REQUIRE_BROWSER=1``,
skipped with the reason elsewhere). The alarm is queued as a playbook does and delivered by a
real dispatcher to the local HTTP sink; the browser follows the link the recipient got.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from crisis.clock import utcnow
from crisis.store.db import make_engine, make_sessionmaker
from notifiers import service
from notifiers.dispatcher import Dispatcher
from tests.boardserver import BoardServer, run_async
from tests.notif_sink import Sink
from tests.notifiers.test_notif_dispatcher import FACTS, make_config
from tests.web.test_board_browser import _open, board, browser  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _send_alarm(url: str, incident_id: str) -> tuple[str, str]:
    """(update id, the text leader-a received) for an alarm to the unit's leaders."""

    async def go() -> tuple[str, str]:
        sink = await Sink().start()
        engine = make_engine(url)
        try:
            config = make_config(sink)
            sessions = make_sessionmaker(engine)
            async with sessions() as session:
                update = await service.request_update(
                    session,
                    config=config,
                    incident_id=incident_id,
                    groups=["leaders"],
                    kind="alarm",
                    template="alarm",
                    facts=FACTS,
                    next_update_at=utcnow() + timedelta(minutes=30),
                    author="user:op",
                )
                await session.commit()
            dispatcher = Dispatcher(sessions, config)
            try:
                while not sink.to("/leader/a"):
                    assert await dispatcher.run_once() or sink.hits
            finally:
                await dispatcher.aclose()
            return update.id, str(sink.to("/leader/a")[0].body["message"])
        finally:
            await engine.dispose()
            await sink.stop()

    return run_async(go)


def _state(server: BoardServer, incident_id: str, update_id: str) -> tuple[str, list[Any]]:
    r = server.api("GET", f"/api/v1/notifications/updates/{update_id}", "op")
    assert r.status_code == 200, r.text
    (message,) = r.json()["messages"]
    timeline = server.api("GET", f"/api/v1/incidents/{incident_id}/timeline", "op").json()
    acked = [e["data"] for e in timeline if e["data"].get("status") == "acknowledged"]
    return message["status"], acked


def test_the_link_shows_the_message_and_only_the_button_confirms_it(
    browser: Any,  # noqa: F811
    board: BoardServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect

    incident = _open(board, title="Brann i avdeling A", type="fire")
    update_id, text = _send_alarm(f"sqlite+aiosqlite:///{tmp_path / 'board.db'}", incident["id"])
    found = re.search(r"https?://\S+/api/v1/notifications/ack/\S+", text)
    assert found, text
    link = board.base + urlsplit(found[0]).path  # the configured public address is not ours

    page = browser.new_context(locale="nb-NO").new_page()
    response = page.goto(link)
    assert response is not None and response.status == 200
    expect(page.locator("h1")).to_contain_text("Bekreft varsel")
    expect(page.locator("#incident")).to_have_text("Brann i avdeling A")
    expect(page.locator("#recipient")).to_have_text("leader-a")
    expect(page.locator("#sent")).to_contain_text(utcnow().strftime("%Y"))
    assert _state(board, incident["id"], update_id) == ("sent", [])

    page.locator("#confirm").click()
    expect(page.locator("#confirmed")).to_contain_text("Bekreftet")
    status, acked = _state(board, incident["id"], update_id)
    assert status == "acknowledged"
    assert len(acked) == 1 and acked[0]["via"] == "link"
    assert acked[0]["acknowledged_by"] == "recipient:leader-a"

    page.goto(link)
    expect(page.locator("#confirmed")).to_contain_text("Allerede bekreftet")
    expect(page.locator("#confirm")).to_have_count(0)
    page.context.close()
