"""The incident history in a real browser (Debian's chromium): an incident closed from its
page leaves the overview, appears in /history, and its page offers no forms (but the
reopening, to a role that may decide it); its lessons are still recorded on their page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.boardserver import BoardServer
from tests.web.test_board_browser import _keep, _login, _open, board, browser, shots

pytestmark = [pytest.mark.browser, pytest.mark.slow]

__all__ = ["board", "browser", "shots"]  # the fixtures, shared with the board's browser tests


def _main_forms(page: Any) -> list[str]:
    """The forms that write: a GET form (the log's filter) changes nothing."""
    return list(
        page.locator("main form").evaluate_all(
            "fs => fs.filter(f => (f.getAttribute('method') || '').toLowerCase() !== 'get')"
            ".map(f => f.id)"
        )
    )


def test_a_closed_incident_leaves_the_board_and_appears_in_the_history(
    browser: Any, board: BoardServer, shots: Path
) -> None:
    from playwright.sync_api import expect

    incident = _open(board, title="Brann i verksted", type="fire")
    other = _open(board, title="Uteblivelse fra permisjon", type="leave", severity=2)
    page = _login(browser, board, "op", "/")
    expect(page.locator(f'.incident-row[data-incident="{incident["id"]}"]')).to_have_count(1)

    page.goto(board.base + f"/incidents/{incident['id']}")
    page.locator("details:has(#form-close) > summary").click()
    form = page.locator("#form-close")
    form.locator("textarea[name=reason]").fill("Brannen er slukket")
    form.locator("textarea[name=final_situation]").fill("Verkstedet stengt, ingen skadde")
    form.locator("button").click()
    expect(page.locator("#closed-box")).to_contain_text("Verkstedet stengt", timeout=5000)
    assert _main_forms(page) == ["form-reopen"]
    expect(page.locator("#countdown")).to_have_count(0)

    # gone from the overview board
    page.goto(board.base + "/")
    expect(page.locator(f'.incident-row[data-incident="{other["id"]}"]')).to_have_count(1)
    expect(page.locator(f'.incident-row[data-incident="{incident["id"]}"]')).to_have_count(0)

    # in the history, reached from the top navigation, with its closing reason
    page.locator('header nav a[href="/history"]').click()
    page.wait_for_url(board.base + "/history")
    row = page.locator(f'.history-row[data-incident="{incident["id"]}"]')
    expect(row).to_have_count(1)
    expect(row.locator(".reason")).to_contain_text("Brannen er slukket")
    expect(page.locator(".history-row")).to_have_count(1)
    # the filter form, submitted: a search that misses, then one that hits
    page.fill("#history-form input[name=q]", "permisjon")
    page.locator("#history-form button").click()
    expect(page.locator("#history-empty")).to_have_count(1)
    page.fill("#history-form input[name=q]", "VERKSTED")
    page.locator("#history-form button").click()
    expect(row).to_have_count(1)
    shot = shots / "history.png"
    page.screenshot(path=str(shot))
    _keep(shot)
    assert (
        board.api("GET", "/api/v1/incidents?status=closed&q=verksted", "op").json()[0]["id"]
        == incident["id"]
    )

    # its lessons page, reached from the history row, records a finding on the closed incident
    row.locator('a[href$="/lessons"]').click()
    page.wait_for_url(board.base + f"/incidents/{incident['id']}/lessons")
    page.fill("#form-finding textarea[name=finding]", "Slukkeutstyret var lett å finne")
    page.locator("#form-finding button").click()
    expect(page.locator("#findings")).to_contain_text("Slukkeutstyret", timeout=5000)
    lessons = board.api("GET", f"/api/v1/incidents/{incident['id']}/lessons", "op").json()
    assert [f["finding"] for f in lessons["findings"]] == ["Slukkeutstyret var lett å finne"]
    page.context.close()

    # a role that may not reopen sees no form at all on the closed incident's page
    reader = _login(browser, board, "komm", f"/incidents/{incident['id']}")
    expect(reader.locator("#closed-box")).to_have_count(1)
    assert _main_forms(reader) == []
    reader.context.close()
