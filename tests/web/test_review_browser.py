"""The review page in a real browser (Debian's chromium): submitting the filter form narrows
the rows, and moving the replay slider shows the level and owner as they were then — with
the vendored script without a reload, and without script as a plain GET form."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from crisis.clock import as_utc
from tests.boardserver import BoardServer
from tests.web.test_board_browser import (  # noqa: F401  (fixtures)
    _entry,
    _keep,
    _login,
    _open,
    board,
    browser,
    shots,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _history(server: BoardServer) -> tuple[str, list[str]]:
    """An incident escalated to the region, then handed to Ringerike by a decision; returns
    its id and the replay stops (entry times) in order."""
    incident = _open(server)
    iid = incident["id"]
    _entry(server, iid, kind="observation", text="Vakthavende på stedet")
    r = server.api(
        "POST",
        f"/api/v1/incidents/{iid}/escalate",
        "op",
        json={"to": "region", "reason": "alvorlig"},
    )
    assert r.status_code == 201, r.text
    _entry(
        server,
        iid,
        kind="decision",
        text="Ringerike overtar ansvaret",
        new_owner="ringerike",
        new_accountable_role="leader",
    )
    timeline = server.api("GET", f"/api/v1/incidents/{iid}/timeline", "kdi").json()
    return iid, sorted({e["at"] for e in timeline})


def test_the_review_page_filters_and_replays_the_board(
    browser: Any,  # noqa: F811
    board: BoardServer,  # noqa: F811
    shots: Path,  # noqa: F811
) -> None:
    from playwright.sync_api import expect

    iid, stops = _history(board)
    assert len(stops) == 4
    page = _login(browser, board, "kdi", f"/incidents/{iid}/review")
    rows = page.locator("#rows li.entry")
    expect(rows).to_have_count(4)
    expect(page.locator("svg.course .escalation")).to_have_count(1)

    # the filter form narrows the rows (a GET: the choice is in the address)
    page.select_option("#filter-kind", ["escalation"])
    page.click("#filter-go")
    page.wait_for_url(re.compile(r"kind=escalation"))
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-kind", "escalation")

    # the slider starts at the last entry: Ringerike owns it, at the region
    level, owner = page.locator("#replay-level"), page.locator("#replay-owner")
    expect(level).to_have_attribute("data-level", "region")
    expect(owner).to_have_attribute("data-unit", "ringerike")
    page.evaluate("window.__marker = 'no reload'")
    page.locator("#replay-slider").fill("2")  # after the observation, before the escalation
    expect(level).to_have_attribute("data-level", "unit")
    expect(level).to_have_text("Enhet")
    expect(owner).to_have_attribute("data-unit", "agder-froland")
    expect(page.locator("#replay-slider-out")).to_have_text("2 / 4")
    page.locator("#replay-slider").fill("3")  # the escalation
    expect(level).to_have_attribute("data-level", "region")
    expect(owner).to_have_attribute("data-unit", "agder-froland")
    assert page.evaluate("window.__marker") == "no reload"
    # the address names the time shown, so a reload or a shared link shows the same board
    [at] = parse_qs(urlsplit(page.url).query)["at"]
    assert as_utc(at) == as_utc(stops[2])
    shot = shots / "review.png"
    page.screenshot(path=str(shot), full_page=True)
    _keep(shot)

    # the report downloads as a PDF named after the incident, with the head it states
    with page.expect_download() as info:
        page.click("#report-link")
    download = info.value
    assert download.suggested_filename.startswith(f"rapport-{iid}-")
    assert download.suggested_filename.endswith(".pdf")
    body = Path(download.path()).read_bytes()
    assert body.startswith(b"%PDF")
    head = board.api("GET", f"/api/v1/incidents/{iid}/report?format=json", "kdi").json()
    assert head["integrity"]["verified"] is True
    assert head["integrity"]["entry_count"] == len(
        board.api("GET", f"/api/v1/incidents/{iid}/timeline", "kdi").json()
    )
    page.context.close()


def test_the_replay_form_works_without_script(
    browser: Any,  # noqa: F811
    board: BoardServer,  # noqa: F811
) -> None:
    from playwright.sync_api import expect

    iid, _ = _history(board)
    context = browser.new_context(java_script_enabled=False, locale="nb-NO")
    page = context.new_page()
    page.goto(board.base + f"/incidents/{iid}/review")
    page.fill("input[name=username]", "kdi")
    page.fill("input[name=password]", "correct horse")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/review$"))
    expect(page.locator("#replay-level")).to_have_attribute("data-level", "region")
    page.locator("#replay-slider").fill("1")
    page.click("#replay-go")
    page.wait_for_url(re.compile(r"[?&]n=1"))
    expect(page.locator("#replay-level")).to_have_attribute("data-level", "unit")
    expect(page.locator("#replay-owner")).to_have_attribute("data-unit", "agder-froland")
    context.close()
