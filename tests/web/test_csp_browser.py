"""The board under its Content-Security-Policy in a real browser (chromium via Playwright):
nothing the board itself does is blocked -- pages, map tiles from the tile server, the live
websocket, form posts and fetches that pass the origin check -- and an injected inline script
is. Uses the board tests' chromium fixture (mandatory under ``CRISIS_REQUIRE_BROWSER=1``).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.boardserver import PASSWORD, BoardServer, start_board_server
from tests.web.test_board_browser import LIVE_MS, _entry, _live, _open, browser  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.slow]

#: Records every violation the page reports (an init script is not subject to the policy).
WATCH = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(e.effectiveDirective + " " + e.blockedURI);
});
"""
#: A 1x1 transparent PNG.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000005000100e226059b"
    "0000000049454e44ae426082"
)


class _Tiles(BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        _Tiles.hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(PNG)))
        self.end_headers()
        self.wfile.write(PNG)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def tiles() -> Iterator[str]:
    """A map tile server on another origin (another port) than the board."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Tiles)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def board(tmp_path: Path, tiles: str) -> Iterator[BoardServer]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'board.db'}"
    server = start_board_server(tmp_path, url, CRISIS_MAP_TILE_URL=tiles + "/{z}/{x}/{y}.png")
    try:
        yield server
    finally:
        server.stop()


def _violations(page: Any) -> list[str]:
    return list(page.evaluate("window.__csp"))


def test_the_board_runs_under_its_policy_and_an_injected_script_does_not(
    browser: Any,  # noqa: F811
    board: BoardServer,
) -> None:
    from playwright.sync_api import expect

    incident = _open(board)
    context = browser.new_context(viewport={"width": 1400, "height": 900}, locale="nb-NO")
    context.add_init_script(WATCH)
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text))
    seen: list[str] = []

    login = page.goto(board.base + "/login")
    assert login is not None
    assert "script-src 'self'" in login.headers["content-security-policy"]
    page.fill("input[name=username]", "op")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(re.escape(board.base) + "/$"))
    _live(page)
    expect(page.locator("#unit-map image").first).to_be_attached()
    page.wait_for_function(
        "[...document.querySelectorAll('#unit-map image')].length > 0"
        " && performance.getEntriesByType('resource').some(e => e.name.includes('/5/'))"
    )
    assert _Tiles.hits, "the map tiles were loaded from the tile server"
    seen += _violations(page)

    # The incident page: the JSON data blocks are read, the live feed arrives over the socket.
    page.goto(board.base + f"/incidents/{incident['id']}")
    _live(page)
    _entry(board, incident["id"], kind="observation", text="Innsatt funnet uskadd")
    expect(page.locator("#timeline")).to_contain_text("funnet uskadd", timeout=LIVE_MS)
    # A form of the page posts with fetch (the origin check lets it through).
    form = page.locator("#form-entry")  # open from the start
    form.locator("textarea[name=text]").fill("Notert fra tavla")
    form.locator("button").click()
    expect(page.locator("#timeline")).to_contain_text("Notert fra tavla", timeout=5000)
    seen += _violations(page)

    for path in ("/report", "/?lang=en"):
        page.goto(board.base + path)
        expect(page.locator("main")).to_be_visible()
        seen += _violations(page)

    # What the policy is for: a script injected into the page does not run.
    page.evaluate(
        "() => { const s = document.createElement('script');"
        " s.textContent = 'window.__ran = true'; document.body.appendChild(s); }"
    )
    page.wait_for_function("() => window.__csp.length > 0")
    assert page.evaluate("window.__ran") is None
    assert [v.split()[0] for v in _violations(page)] == ["script-src-elem"]

    # The logout button is a plain form post: the browser's Origin passes the check.
    page.locator("form[action='/logout'] button").click()
    page.wait_for_url(re.compile(r"/login"))
    assert page.goto(board.base + "/") is not None
    page.wait_for_url(re.compile(r"/login\?next="))

    assert seen == [], seen
    refused = [m for m in console if "Content Security Policy" in m]
    assert len(refused) == 1 and "inline script" in refused[0], refused
    context.close()
