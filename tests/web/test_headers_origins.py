"""Security headers on every answer, the origin check of cookie-authenticated writes, who may
read /metrics, and the API docs behind a login in production (issue 15, item 4)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin

from crisis.settings import Settings
from tests.boardserver import PASSWORD, BoardServer
from tests.conftest import BASE_URL, ApiHarness, api_for
from tests.notif_sink import Sink
from tests.notifiers.test_notif_ack import ACK, FORM, INBOUND, _alarm, _twilio, sink  # noqa: F401
from tests.web.test_board_ws import board  # noqa: F401  (fixture)

EVIL = "https://evil.example"
INCIDENT = {"type": "fire", "title": "Brann i verksted", "unit": "agder-froland", "severity": 4}


def policy(response: httpx.Response) -> dict[str, list[str]]:
    """The Content-Security-Policy as {directive: [sources]}."""
    out = {}
    for part in response.headers["content-security-policy"].split(";"):
        name, *sources = part.split()
        out[name] = sources
    return out


def assert_secured(response: httpx.Response, what: str) -> None:
    csp = policy(response)
    assert csp["default-src"] == ["'self'"], what
    assert csp["script-src"] == ["'self'"], what
    assert csp["style-src"] == ["'self'"], what
    assert csp["connect-src"] == ["'self'"], what
    assert csp["object-src"] == ["'none'"] and csp["base-uri"] == ["'none'"], what
    assert csp["form-action"] == ["'self'"] and csp["frame-ancestors"] == ["'none'"], what
    assert "'unsafe-inline'" not in str(csp) and "'unsafe-eval'" not in str(csp), what
    assert response.headers["x-content-type-options"] == "nosniff", what
    assert response.headers["x-frame-options"] == "DENY", what
    assert response.headers["referrer-policy"] == "same-origin", what


def _nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = {"a": value}
    return value


async def test_every_kind_of_answer_carries_the_security_headers(settings: Settings) -> None:
    from web.app import create_app

    app = create_app(settings)

    def boom() -> None:
        raise RuntimeError("a bug")

    def refused() -> None:
        raise ConnectionRefusedError(111, "Connect call failed")

    app.add_api_route("/test/boom", boom)
    app.add_api_route("/test/refused", refused)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client,
    ):
        admin = await ApiHarness(app, client).user("admin", "admin")
        limit = settings.api_max_body_bytes
        settings.effective_run_dir.mkdir(parents=True, exist_ok=True)
        answers = {
            "HTML page": await client.get("/login"),
            "JSON": await client.get("/healthz"),
            "static script": await client.get("/static/board.js"),
            "static style": await client.get("/static/board.css"),
            "401": await client.get("/api/v1/me"),
            "404 route": await client.get("/no/such/page"),
            "404 handler": await client.get("/api/v1/incidents/nope/timeline", headers=admin),
            "413 body limit": await client.post(
                "/api/v1/incidents",
                content=b"x" * (limit + 1),
                headers={**admin, "Content-Type": "application/json"},
            ),
            "422 depth limit": await client.post(
                "/api/v1/incidents", json=_nested(100), headers=admin
            ),
            "422 validation": await client.get(
                "/api/v1/sitreps/99999999999999999999", headers=admin
            ),
            "403 origin": await client.post("/login", data={"username": "a", "password": "b"}),
            "500": await client.get("/test/boom"),
            "503 database": await client.get("/test/refused"),
        }
        (settings.effective_run_dir / "draining").write_text("")
        answers["503 draining"] = await client.post("/api/v1/events", json={}, headers=admin)
    expected = {
        "HTML page": 200,
        "JSON": 200,
        "static script": 200,
        "static style": 200,
        "401": 401,
        "404 route": 404,
        "404 handler": 404,
        "413 body limit": 413,
        "422 depth limit": 422,
        "422 validation": 422,
        "403 origin": 403,
        "500": 500,
        "503 database": 503,
        "503 draining": 503,
    }
    assert {what: r.status_code for what, r in answers.items()} == expected
    for what, response in answers.items():
        assert_secured(response, what)
    assert answers["HTML page"].headers["content-type"].startswith("text/html")
    assert "img-src 'self' data:" in answers["HTML page"].headers["content-security-policy"]


async def test_the_map_tile_server_is_allowed_for_images_only(
    tmp_path: Path, database_url: str
) -> None:
    tiles = "https://tiles.example.no:8443/osm/{z}/{x}/{y}.png"
    settings = Settings(
        data_dir=tmp_path / "var", database_url=database_url, secret_key="s", map_tile_url=tiles
    )
    async with api_for(settings) as api:
        r = await api.client.get("/login")
    csp = policy(r)
    assert csp["img-src"] == ["'self'", "data:", "https://tiles.example.no:8443"]
    assert_secured(r, "with tiles")


async def _timeline(api: ApiHarness, incident: str, headers: dict[str, str]) -> list[str]:
    r = await api.client.get(f"/api/v1/incidents/{incident}/timeline", headers=headers)
    assert r.status_code == 200, r.text
    return [e["text"] for e in r.json()]


async def test_a_cross_site_write_with_the_victims_cookie_is_refused_and_stores_nothing(
    api: ApiHarness,
) -> None:
    token = await api.user("kari", "operator", unit="agder-froland")
    r = await api.client.post("/api/v1/incidents", json=INCIDENT, headers=token)
    incident = r.json()["id"]
    entries = f"/api/v1/incidents/{incident}/entries"
    async with api.login("kari") as browser:
        # The board's own pages send their origin: accepted.
        r = await browser.post(entries, json={"kind": "observation", "text": "fra tavla"})
        assert r.status_code == 201, r.text
        # Another site's page makes the victim's browser send the same request.
        bare = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=api.app), base_url=BASE_URL, cookies=browser.cookies
        )
        async with bare:
            forged = [
                ({"Origin": EVIL}, "forged 1"),
                ({"Origin": "null"}, "forged 2"),
                ({"Origin": "http://testserver.evil.example"}, "forged 3"),
                ({"Origin": "https://testserver"}, "forged 4"),  # another scheme
                ({"Referer": f"{EVIL}/page"}, "forged 5"),
                ({}, "forged 6"),  # neither header
            ]
            for headers, text in forged:
                r = await bare.post(
                    entries, json={"kind": "observation", "text": text}, headers=headers
                )
                assert r.status_code == 403, (headers, r.text)
                (error,) = r.json()["errors"]
                assert error["field"] == "origin"
                assert error["message"].startswith("opphav avvist / origin check failed")
            # A form post of a staff report, and a logout, are held to the same check.
            r = await bare.post(
                "/api/v1/reports",
                data={"category": "fire", "place": "A", "what": "forged"},
                headers={"Origin": EVIL},
            )
            assert r.status_code == 403
            assert (await bare.post("/logout", headers={"Origin": EVIL})).status_code == 403
            assert (await browser.get("/api/v1/me")).status_code == 200, "still logged in"
            # Without an Origin, a Referer from this site is enough (older browsers).
            r = await bare.post(
                entries,
                json={"kind": "observation", "text": "med referer"},
                headers={"Referer": f"{BASE_URL}/incidents/{incident}"},
            )
            assert r.status_code == 201, r.text
    texts = await _timeline(api, incident, token)
    assert texts[1:] == ["fra tavla", "med referer"] or sorted(texts[1:]) == [
        "fra tavla",
        "med referer",
    ], texts


async def test_a_forged_login_is_refused_and_logs_nobody_in(api: ApiHarness) -> None:
    await api.user("mallory", "operator", unit="agder-froland")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api.app), base_url=BASE_URL
    ) as victim:
        form = {"username": "mallory", "password": "correct horse"}
        for headers in ({"Origin": EVIL}, {"Referer": f"{EVIL}/"}, {}):
            r = await victim.post("/login", data=form, headers=headers)
            assert r.status_code == 403, r.text
            assert "crisis_session" not in r.cookies
            assert (await victim.get("/api/v1/me")).status_code == 401
        r = await victim.post("/login", data=form, headers={"Origin": BASE_URL})
        assert r.status_code == 303


async def test_bearer_clients_and_machine_endpoints_need_no_origin(
    api: ApiHarness,
    sink: Sink,  # noqa: F811
) -> None:
    token = await api.user("kdi", "kdi")
    async with (
        api.login("kdi") as browser,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=api.app), base_url=BASE_URL, cookies=browser.cookies
        ) as bare,
    ):
        # A bearer token is no ambient credential: whatever else the request carries.
        r = await bare.post("/api/v1/incidents", json=INCIDENT, headers={**token, "Origin": EVIL})
        assert r.status_code == 201, r.text
        # The confirmation link and the SMS gateway's webhook carry their own credential.
        alarm = await _alarm(api, sink)
        # The confirmation page has Referrer-Policy no-referrer: its form posts "Origin: null".
        r = await bare.post(f"{ACK}/{alarm.code}", headers={**FORM, "Origin": "null"})
        assert r.status_code == 200 and "Bekreftet" in r.text
        r = await bare.post(INBOUND, data=_twilio(f"SVAR {alarm.code}"))
        assert r.status_code == 200 and "<Response/>" in r.text
    r = await api.client.get(f"/api/v1/notifications/updates/{alarm.update}", headers=alarm.headers)
    assert [m["status"] for m in r.json()["messages"]] == ["acknowledged"]


async def test_allowed_origins_admit_the_public_address_behind_a_proxy(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRISIS_ALLOWED_ORIGINS", "https://Krise.Example.no:443/, http://10.0.0.5")
    settings = Settings(data_dir=tmp_path / "var", database_url=database_url, secret_key="s")
    assert settings.allowed_origins == ["https://krise.example.no:443", "http://10.0.0.5"]
    async with api_for(settings) as api:
        token = await api.user("kari", "operator", unit="agder-froland")
        incident = await api.client.post("/api/v1/incidents", json=INCIDENT, headers=token)
        entries = f"/api/v1/incidents/{incident.json()['id']}/entries"
        async with api.login("kari") as browser:
            for origin, status in (
                ("https://krise.example.no", 201),
                ("http://10.0.0.5", 201),
                ("https://krise.example.no:8443", 403),
                (EVIL, 403),
            ):
                r = await browser.post(
                    entries,
                    json={"kind": "observation", "text": origin},
                    headers={"Origin": origin},
                )
                assert r.status_code == status, (origin, r.text)
    monkeypatch.setenv("CRISIS_ALLOWED_ORIGINS", "https://krise.example.no/board")
    with pytest.raises(ValueError, match="is not an origin"):
        Settings()


def test_a_websocket_opened_with_the_cookie_must_come_from_this_site(
    board: BoardServer,  # noqa: F811
) -> None:
    with httpx.Client(base_url=board.base) as client:
        form = {"username": "op", "password": PASSWORD}
        r = client.post("/login", data=form, headers={"Origin": board.base})
        assert r.status_code == 303, r.text
        cookies = {"Cookie": "; ".join(f"{k}={v}" for k, v in r.cookies.items())}
    url = board.base.replace("http", "ws") + "/ws/board"
    with connect(url, origin=Origin(board.base), additional_headers=cookies, open_timeout=15):
        pass  # the board's own page: accepted
    for origin in (Origin(EVIL), None):
        with pytest.raises(InvalidStatus) as refused:
            connect(url, origin=origin, additional_headers=cookies, open_timeout=15)
        assert refused.value.response.status_code == 403


async def test_metrics_need_the_metrics_token_or_an_admin(
    tmp_path: Path, database_url: str
) -> None:
    for token in (None, "scrape-me-0123456789"):
        settings = Settings(
            data_dir=tmp_path / "var",
            database_url=database_url,
            secret_key="s",
            metrics_token=token,
        )
        async with api_for(settings) as api:
            admin = await api.user(f"admin-{bool(token)}", "admin")
            operator = await api.user(f"op-{bool(token)}", "operator", unit="agder-froland")
            await api.client.post("/api/v1/incidents", json=INCIDENT, headers=operator)
            anonymous = await api.client.get("/metrics")
            assert anonymous.status_code == 401
            assert "crisis_incidents" not in anonymous.text
            assert (await api.client.get("/metrics", headers=operator)).status_code == 403
            wrong = await api.client.get("/metrics", headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
            r = await api.client.get("/metrics", headers=admin)
            assert r.status_code == 200 and "crisis_incidents_opened_total 1.0" in r.text
            async with api.login(f"admin-{bool(token)}") as browser:
                assert (await browser.get("/metrics")).status_code == 200
            if token:
                scraper = {"Authorization": f"Bearer {token}"}
                r = await api.client.get("/metrics", headers=scraper)
                assert r.status_code == 200 and "crisis_incidents_opened_total 1.0" in r.text


def _inline_scripts(html: str) -> list[str]:
    return [
        part.split(">", 1)[0]
        for part in html.split("<script")[1:]
        if "src=" not in part.split(">", 1)[0]
    ]


async def test_api_docs_are_open_in_development_and_fit_the_policy(api: ApiHarness) -> None:
    schema = await api.client.get("/openapi.json")
    assert schema.status_code == 200 and "/api/v1/incidents" in schema.json()["paths"]
    assert_secured(schema, "openapi.json")
    for path in ("/docs", "/redoc"):
        page = await api.client.get(path)
        assert page.status_code == 200, path
        csp = policy(page)
        assert "'unsafe-inline'" not in csp["script-src"] and "'unsafe-eval'" not in str(csp)
        assert csp["frame-ancestors"] == ["'none'"] and csp["object-src"] == ["'none'"]
        assert _inline_scripts(page.text) == [], path
    assert "/static/apidocs.js" in (await api.client.get("/docs")).text
    assert (await api.client.get("/static/apidocs.js")).status_code == 200


async def test_api_docs_need_a_login_in_production(tmp_path: Path, database_url: str) -> None:
    settings = Settings(
        data_dir=tmp_path / "var", database_url=database_url, secret_key="s", production=True
    )
    async with api_for(settings) as api:
        token = await api.user("kari", "operator", unit="agder-froland")
        r = await api.client.get("/openapi.json")
        assert r.status_code == 401 and "paths" not in r.text
        for path in ("/docs", "/redoc"):
            r = await api.client.get(path)
            assert r.status_code == 303 and r.headers["location"] == f"/login?next={path}"
        r = await api.client.get("/openapi.json", headers=token)
        assert r.status_code == 200 and "/api/v1/incidents" in json.dumps(r.json()["paths"])
        async with api.login("kari") as browser:
            assert (await browser.get("/openapi.json")).status_code == 200
            assert (await browser.get("/docs")).status_code == 200
            assert (await browser.get("/redoc")).status_code == 200
