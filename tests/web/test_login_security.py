"""Authentication under attack (issue 15): logins that never stall the server, throttled
guessing, sessions that end, tokens that expire and are revoked, and no token in the logs.

Through the public interfaces only: HTTP against the app or a real uvicorn server, the board
websocket, and the ``crisis`` CLI (``main()`` or the console script with its stdin).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import col, update
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from crisis import cli
from crisis.accounts import service as accounts
from crisis.accounts.models import ApiToken
from crisis.clock import utcnow
from crisis.kafka.broker import free_port
from crisis.settings import Settings
from crisis.store.db import make_engine, make_sessionmaker, migrate
from tests.boardserver import DEFAULT_USERS, PASSWORD, BoardServer, run_async, start_board_server
from tests.conftest import ApiHarness

HTML = {"accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


@asynccontextmanager
async def _harness(settings: Settings, **overrides: Any) -> AsyncIterator[ApiHarness]:
    """The ``api`` fixture's harness on settings with ``overrides``; several may share a
    database (as several web processes, or one restarted, do)."""
    from web.app import create_app

    app = create_app(settings.model_copy(update=overrides))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://testserver",
            headers={"Origin": "http://testserver"},
        ) as client:
            yield ApiHarness(app, client)


def _client(api: ApiHarness, address: str = "127.0.0.1") -> httpx.AsyncClient:
    """A browser of its own (own cookies) at a client ``address``."""
    transport = httpx.ASGITransport(app=api.app, client=(address, 40000))
    return httpx.AsyncClient(
        transport=transport, base_url="http://testserver", headers={"Origin": "http://testserver"}
    )


async def _login(client: httpx.AsyncClient, name: str, password: str) -> httpx.Response:
    return await client.post("/login", data={"username": name, "password": password})


def _retry_after(r: httpx.Response) -> int:
    assert r.status_code == 429, r.text
    return int(r.headers["retry-after"])


# --- argon2 off the event loop, bounded ------------------------------------------------


async def test_healthz_stays_fast_while_logins_are_checked(
    tmp_path: Path, database_url: str
) -> None:
    """Finding: concurrent logins stalled /healthz (argon2 ran in the event loop)."""
    server = await asyncio.to_thread(start_board_server, tmp_path, database_url)
    try:
        names = [u[0] for u in DEFAULT_USERS] + ["nobody-1", "nobody-2", "nobody-3"]
        async with (
            httpx.AsyncClient(
                base_url=server.base, timeout=60, headers={"Origin": server.base}
            ) as client,
            httpx.AsyncClient(
                base_url=server.base, timeout=60, headers={"Origin": server.base}
            ) as probe,
        ):
            await probe.get("/healthz")
            started = time.perf_counter()
            logins = [asyncio.create_task(_login(client, name, "wrong password")) for name in names]
            latencies = []
            while not all(t.done() for t in logins):
                t0 = time.perf_counter()
                await probe.get("/healthz")
                latencies.append(time.perf_counter() - t0)
            took = time.perf_counter() - started
        assert [t.result().status_code for t in logins] == [401] * len(names)
        latencies.sort()
        p90 = latencies[int(len(latencies) * 0.9)]
        print(
            f"\n{len(names)} concurrent logins took {took * 1000:.0f} ms; /healthz "
            f"{len(latencies)} samples: median {latencies[len(latencies) // 2] * 1000:.1f}, "
            f"p90 {p90 * 1000:.1f}, max {latencies[-1] * 1000:.1f} ms"
        )
        assert len(latencies) >= 10, "the logins ended before /healthz was measured"
        # p90 bounds it: argon2 in the loop made every sample wait. The maximum only catches a
        # stall; other processes on a shared machine cause the odd spike with no login running.
        assert p90 < 0.2 and latencies[-1] < 5.0, (latencies, server.output())
    finally:
        server.stop()


async def test_a_full_login_queue_is_answered_at_once(settings: Settings) -> None:
    async with _harness(settings, login_concurrency=1, login_max_pending=2) as api:
        await api.user("kari", "operator", unit="agder-froland")
        clients = [_client(api, f"10.0.0.{n}") for n in range(1, 9)]
        try:
            answers = await asyncio.gather(
                *(_login(c, f"name-{n}", "wrong password") for n, c in enumerate(clients))
            )
        finally:
            for c in clients:
                await c.aclose()
        codes = sorted(r.status_code for r in answers)
        assert codes.count(401) == 2 and codes.count(503) == 6, codes
        busy = next(r for r in answers if r.status_code == 503)
        assert busy.headers["retry-after"] == "1"
        assert "for mange innlogginger samtidig" in busy.json()["detail"]
        # Nothing refused that way was counted: the same names may try again at once.
        assert (await _login(api.client, "kari", "correct horse")).status_code == 303


# --- throttling ----------------------------------------------------------------------


async def test_thirty_wrong_passwords_then_the_right_one_is_refused(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Finding: no rate limit or lockout (30 wrong passwords, then the right one: 303)."""
    caplog.set_level(logging.WARNING, logger="crisis.accounts")
    async with _harness(settings) as api:
        await api.user("kari", "operator", unit="agder-froland")
        codes = [(await _login(api.client, "kari", f"guess-{n}")).status_code for n in range(30)]
        assert codes == [401] * 5 + [429] * 25
        right = await _login(api.client, "kari", "correct horse")
        assert right.status_code == 429 and 1 <= _retry_after(right) <= 5
        assert "for mange mislykkede innlogginger" in right.json()["detail"]
        assert "too many failed logins" in right.json()["detail"]
        assert (await api.client.get("/api/v1/me")).status_code == 401
    # The count is in the database: another web process (or a restart) refuses too.
    async with _harness(settings) as other:
        assert (await _login(other.client, "kari", "correct horse")).status_code == 429
    messages = [r.getMessage() for r in caplog.records if r.name == "crisis.accounts"]
    failed = [m for m in messages if m.startswith("login failed")]
    refused = [m for m in messages if m.startswith("login refused")]
    assert len(failed) == 5 and len(refused) == 27
    assert all("'kari'" in m and "127.0.0.1" in m for m in failed + refused)
    assert not any("guess-" in m or "correct horse" in m for m in messages)


async def test_the_wait_doubles_is_capped_and_a_success_resets_it(settings: Settings) -> None:
    async with _harness(
        settings, login_max_failures=2, login_backoff_seconds=1, login_backoff_max_seconds=2
    ) as api:
        await api.user("kari", "operator", unit="agder-froland")

        async def attempt(password: str) -> httpx.Response:
            return await _login(api.client, "kari", password)

        assert [(await attempt("wrong")).status_code for _ in range(2)] == [401, 401]
        assert _retry_after(await attempt("wrong")) == 1
        assert _retry_after(await attempt("correct horse")) == 1, "even the right password"
        await asyncio.sleep(1.1)
        assert (await attempt("wrong")).status_code == 401
        assert _retry_after(await attempt("wrong")) == 2, "the wait doubles"
        await asyncio.sleep(2.1)
        assert (await attempt("wrong")).status_code == 401
        assert _retry_after(await attempt("wrong")) == 2, "capped"
        await asyncio.sleep(2.1)
        assert (await attempt("correct horse")).status_code == 303
        # The success reset the account: two failures again before a wait.
        assert [(await attempt("wrong")).status_code for _ in range(2)] == [401, 401]
        assert _retry_after(await attempt("wrong")) == 1


async def test_one_address_is_throttled_across_names_and_others_are_not(
    settings: Settings,
) -> None:
    async with _harness(settings, login_address_max_failures=3) as api:
        await api.user("kari", "operator", unit="agder-froland")
        async with _client(api, "10.1.1.1") as guesser, _client(api, "10.2.2.2") as colleague:
            for name in ("ola", "per", "pål"):
                assert (await _login(guesser, name, "wrong password")).status_code == 401
            assert _retry_after(await _login(guesser, "kari", "correct horse")) >= 1
            assert (await _login(colleague, "ola", "wrong password")).status_code == 401
            assert (await _login(colleague, "kari", "correct horse")).status_code == 303


async def test_the_login_page_shows_a_refusal_in_norwegian_and_english(
    settings: Settings,
) -> None:
    """A form posted by the browser itself gets the login page with the message, not JSON."""
    async with _harness(settings, login_max_failures=1) as api:
        await api.user("kari", "operator", unit="agder-froland")
        wrong = await api.client.post(
            "/login",
            data={"username": "kari", "password": "wrong", "next": "/report"},
            headers=HTML,
        )
        assert wrong.status_code == 401 and wrong.headers["content-type"].startswith("text/html")
        assert 'id="login-form"' in wrong.text and 'value="kari"' in wrong.text
        assert "feil brukernavn eller passord / wrong username or password" in wrong.text
        assert 'name="next" value="/report"' in wrong.text
        waits = await api.client.post(
            "/login", data={"username": "kari", "password": "correct horse"}, headers=HTML
        )
        assert waits.status_code == 429 and waits.headers["content-type"].startswith("text/html")
        seconds = _retry_after(waits)
        assert (
            f"for mange mislykkede innlogginger; prøv igjen om {seconds} s / "
            f"too many failed logins; try again in {seconds} s"
        ) in waits.text
        # The page's own script asks for JSON and shows its detail.
        scripted = await _login(api.client, "kari", "correct horse")
        assert scripted.status_code == 429 and "prøv igjen" in scripted.json()["detail"]


# --- server-side sessions --------------------------------------------------------------


async def test_logout_ends_a_copied_session_at_once(api: ApiHarness) -> None:
    """Finding: logout did not end the session (a copied cookie worked for 12 more hours)."""
    await api.user("kari", "operator", unit="agder-froland")
    async with _client(api) as owner, _client(api, "10.9.9.9") as thief:
        assert (await _login(owner, "kari", "correct horse")).status_code == 303
        thief.cookies.set("crisis_session", owner.cookies["crisis_session"])
        assert (await thief.get("/api/v1/me")).json()["name"] == "kari"
        assert (await thief.get("/")).status_code == 200
        assert (await owner.post("/logout")).status_code == 303
        assert (await owner.get("/api/v1/me")).status_code == 401
        assert (await thief.get("/api/v1/me")).status_code == 401
        page = await thief.get("/")
        assert page.status_code == 303 and page.headers["location"].startswith("/login")


async def test_the_session_cookie_is_secure_when_configured(settings: Settings) -> None:
    """Finding: the session cookie was never ``Secure``."""
    for secure in (False, True):
        async with _harness(settings, cookie_secure=secure) as api:
            await api.user(f"kari-{secure}", "operator", unit="agder-froland")
            r = await _login(api.client, f"kari-{secure}", "correct horse")
            assert r.status_code == 303
            cookie = r.headers["set-cookie"]
            assert cookie.startswith("crisis_session=") and "httponly" in cookie.lower()
            assert ("; secure" in cookie.lower()) is secure, cookie


# --- the CLI: passwords, disabled users, tokens ---------------------------------------


@pytest.fixture
def crisis_cli(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Any:
    """``crisis …`` on the test's database: ``main()`` in a thread (it runs its own event
    loop); returns its exit code, stdout and stderr."""
    monkeypatch.setenv("CRISIS_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("CRISIS_DATABASE_URL", settings.effective_database_url)

    async def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = await asyncio.to_thread(cli.main, list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def _console(settings: Settings, *argv: str, stdin: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRISIS_")}
    env.update(
        CRISIS_DATA_DIR=str(settings.data_dir), CRISIS_DATABASE_URL=settings.effective_database_url
    )
    return subprocess.run(
        [sys.executable, "-m", "crisis.cli", *argv],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_a_password_change_ends_the_users_sessions(
    api: ApiHarness, settings: Settings
) -> None:
    """Finding: users could not change passwords; sessions outlived any change."""
    await api.user("kari", "operator", unit="agder-froland")
    async with _client(api) as browser:
        assert (await _login(browser, "kari", "correct horse")).status_code == 303
        short = await asyncio.to_thread(
            _console, settings, "user", "passwd", "kari", "--password-stdin", stdin="kort\n"
        )
        assert short.returncode == 2 and "at least 8 characters" in short.stderr
        assert (await browser.get("/api/v1/me")).status_code == 200, "nothing changed"
        changed = await asyncio.to_thread(
            _console,
            settings,
            "user",
            "passwd",
            "kari",
            "--password-stdin",
            stdin="battery staple\n",
        )
        assert changed.returncode == 0, changed.stderr
        assert "1 browser sessions ended" in changed.stdout
        assert (await browser.get("/api/v1/me")).status_code == 401
        assert (await _login(browser, "kari", "correct horse")).status_code == 401
        assert (await _login(browser, "kari", "battery staple")).status_code == 303
    nobody = await asyncio.to_thread(
        _console, settings, "user", "passwd", "nobody", "--password-stdin", stdin="long enough\n"
    )
    assert nobody.returncode == 2 and "no user 'nobody'" in nobody.stderr


async def test_a_disabled_user_loses_sessions_and_tokens_until_enabled(
    api: ApiHarness, crisis_cli: Any
) -> None:
    """Finding: users could not be deactivated (the CLI had ``user add`` only)."""
    headers = await api.user("kari", "operator", unit="agder-froland")
    async with _client(api) as browser:
        assert (await _login(browser, "kari", "correct horse")).status_code == 303
        code, out, _ = await crisis_cli("user", "disable", "kari")
        assert code == 0 and "1 browser sessions ended" in out
        assert (await browser.get("/api/v1/me")).status_code == 401
        assert (await api.client.get("/api/v1/me", headers=headers)).status_code == 401
        assert (await _login(browser, "kari", "correct horse")).status_code == 401
        code, _, _ = await crisis_cli("user", "enable", "kari")
        assert code == 0
        assert (await api.client.get("/api/v1/me", headers=headers)).status_code == 200
        assert (await _login(browser, "kari", "correct horse")).status_code == 303
    code, _, err = await crisis_cli("user", "disable", "nobody")
    assert code == 2 and "no user 'nobody'" in err


async def test_tokens_are_listed_expire_and_are_revoked(api: ApiHarness, crisis_cli: Any) -> None:
    """Finding: tokens could not be revoked or expired."""
    old = await api.user("kari", "operator", unit="agder-froland")  # a token without expiry
    await api.user("ola", "kdi")
    code, out, _ = await crisis_cli("token", "create", "kari", "--label", "sensor")
    assert code == 0 and "expires in 365 days" in out
    default = out.strip().splitlines()[-1]
    code, out, _ = await crisis_cli("token", "create", "kari", "--expires-days", "2")
    assert code == 0 and "expires in 2 days" in out
    short = out.strip().splitlines()[-1]
    for token in (default, short):
        r = await api.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.json()["name"] == "kari"

    code, out, _ = await crisis_cli("token", "list", "--user", "kari")
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) == 3 and all("kari" in line for line in lines)
    assert not any(t[len("crisis_") :] in out for t in (default, short))
    ids = [int(line.split()[0]) for line in lines]
    assert "never" in lines[0] and "active" in lines[0] and "last used" in lines[0]
    assert "sensor" in lines[1] and re.search(r"expires \d{4}-\d\d-\d\d", lines[1])
    code, out, _ = await crisis_cli("token", "list")
    assert len(out.strip().splitlines()) == 4

    # Time passes: the short token's expiry is moved into the past rather than waited for.
    async with api.app.state.sessions() as session:
        await session.exec(
            update(ApiToken)
            .where(col(ApiToken.id) == ids[2])
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        await session.commit()
    r = await api.client.get("/api/v1/me", headers={"Authorization": f"Bearer {short}"})
    assert r.status_code == 401
    code, _, _ = await crisis_cli("token", "revoke", str(ids[1]))
    assert code == 0
    r = await api.client.get("/api/v1/me", headers={"Authorization": f"Bearer {default}"})
    assert r.status_code == 401
    assert (await api.client.get("/api/v1/me", headers=old)).status_code == 200
    code, out, _ = await crisis_cli("token", "list", "--user", "kari")
    states = [line.split()[2] for line in out.strip().splitlines()]
    assert states == ["active", "revoked", "expired"]
    code, _, err = await crisis_cli("token", "revoke", "999999")
    assert code == 2 and "no token 999999" in err
    code, _, err = await crisis_cli("token", "create", "kari", "--expires-days", "-1")
    assert code == 2


# --- the board websocket ----------------------------------------------------------------


@pytest.fixture
def board(tmp_path: Path, database_url: str) -> Iterator[BoardServer]:
    server = start_board_server(tmp_path, database_url, CRISIS_BOARD_RECHECK_SECONDS="0.5")
    try:
        yield server
    finally:
        server.stop()


def _socket(board: BoardServer, *, token: str | None = None, cookie: str | None = None) -> Any:
    url = board.base.replace("http", "ws") + "/ws/board" + (f"?token={token}" if token else "")
    headers = {"Cookie": f"crisis_session={cookie}"} if cookie else None
    return connect(url, additional_headers=headers, origin=board.base, open_timeout=15)


def _closed_with(ws: ClientConnection) -> int | None:
    with pytest.raises(ConnectionClosed) as closed:
        for _ in range(100):
            ws.recv(timeout=10)
    return closed.value.rcvd.code if closed.value.rcvd else None


def test_the_board_socket_follows_logout_and_revocation(
    board: BoardServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The websocket takes the same session and token check, and re-checks open sockets."""
    with httpx.Client(base_url=board.base, timeout=15, headers={"Origin": board.base}) as browser:
        r = browser.post("/login", data={"username": "op", "password": PASSWORD})
        assert r.status_code == 303
        cookie = browser.cookies["crisis_session"]
        with (
            _socket(board, cookie=cookie) as by_cookie,
            _socket(board, token=board.tokens["kdi"]) as by_token,
        ):
            assert '"hello"' in by_cookie.recv(timeout=10)
            assert '"hello"' in by_token.recv(timeout=10)
            assert browser.post("/logout").status_code == 303
            assert _closed_with(by_cookie) == 4401
            with _socket(board, cookie=cookie) as again:
                assert _closed_with(again) == 4401

            monkeypatch.setenv("CRISIS_DATABASE_URL", board.env["CRISIS_DATABASE_URL"])
            monkeypatch.setenv("CRISIS_DATA_DIR", board.env["CRISIS_DATA_DIR"])
            listing = run_async(lambda: _token_ids(board.env["CRISIS_DATABASE_URL"], "kdi"))
            assert cli.main(["token", "revoke", str(listing[0])]) == 0
            assert _closed_with(by_token) == 4401


async def _token_ids(url: str, name: str) -> list[int]:
    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine)() as session:
            return [t.id for t in await accounts.list_tokens(session, user=name)]
    finally:
        await engine.dispose()


# --- tokens never logged ----------------------------------------------------------------


async def _user_with_token(url: str) -> str:
    engine = make_engine(url)
    try:
        await migrate(engine)
        async with make_sessionmaker(engine)() as session:
            await accounts.add_user(session, name="kdi", role="kdi", password=PASSWORD)
            token = await accounts.create_token(session, name="kdi")
            await session.commit()
        return token
    finally:
        await engine.dispose()


def test_the_access_log_never_shows_a_token(tmp_path: Path, database_url: str) -> None:
    """Finding: the websocket's ``?token=`` was written in full to the access log."""
    token = run_async(lambda: _user_with_token(database_url))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRISIS_")}
    env.update(
        CRISIS_DATA_DIR=str(tmp_path / "var"),
        CRISIS_DATABASE_URL=database_url,
        CRISIS_SECRET_KEY="log-test-secret",
    )
    port = free_port()
    log_path = tmp_path / "web.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "web", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=2):  # noqa: S310
                    break
            except OSError:
                time.sleep(0.1)
        ws_url = f"ws://127.0.0.1:{port}/ws/board?since=0&token={token}"
        with connect(ws_url, open_timeout=15) as ws:
            assert '"hello"' in ws.recv(timeout=10)
        with httpx.Client(base_url=base, timeout=15, headers={"Origin": base}) as client:
            assert client.get(f"/api/v1/me?access_token={token}").status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    logged = log_path.read_text()
    assert "/ws/board?since=0&token=[redacted]" in logged, logged
    assert "/api/v1/me?access_token=[redacted]" in logged, logged
    assert token not in logged and token[len("crisis_") :] not in logged
