"""The aiohttp poster behind ``json://`` (notifiers.webhook) against a scripted server.

The server answers each request with whatever bytes the test scripts (chunked, framed by
the end of the connection, 100-continue first, garbage, nothing at all), so the framing,
keep-alive, timeout and error paths are exercised on real sockets. The payload test puts
the same URL through stock apprise (``requests``) and through ours and compares requests.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from apprise.plugins.custom_json import NotifyJSON
from yarl import URL

from notifiers import channels, webhook


@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


Script = Callable[[Request], "bytes | None"]


@dataclass
class Server:
    """Answers with ``script(request)``; None: say nothing (a hung server)."""

    script: Script
    requests: list[Request] = field(default_factory=list)
    connections: int = 0
    close_after: bool = False
    port: int = 0
    _server: asyncio.Server | None = None

    async def start(self) -> Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def start_tls(self, ctx: ssl.SSLContext) -> Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=ctx)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if line:
                        k, _, v = line.partition(":")
                        headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                request = Request(method, target, headers, body)
                self.requests.append(request)
                answer = self.script(request)
                if answer is None:
                    await asyncio.sleep(30)
                    return
                writer.write(answer)
                await writer.drain()
                if self.close_after:
                    return
        finally:
            writer.close()


def ok(body: bytes = b"ok", extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode("latin-1") + body


@pytest.fixture
async def server() -> AsyncIterator[Callable[..., Any]]:
    made: list[Server] = []

    async def make(script: Script, **kw: Any) -> Server:
        s = await Server(script, **kw).start()
        made.append(s)
        return s

    yield make
    for s in made:
        await s.stop()
    await webhook.close()


def target(url: str) -> Any:
    channels.register_plugins()
    instance = channels.Targets().get(url)
    assert isinstance(instance, channels.AsyncJSON)
    return instance


async def test_the_request_is_what_stock_apprise_sends(server: Callable[..., Any]) -> None:
    srv = await server(lambda r: ok())
    url = (
        f"json://kari:hemmelig@127.0.0.1:{srv.port}/hook/a%20b?+X-Token=abc"
        "&-channel=drift&:sender=crisis&:type=kind"
    )
    ours = target(url)
    assert await ours.async_notify(body="Røyk i avdeling A", title="Brann")
    stock = NotifyJSON(**NotifyJSON.parse_url(url))
    assert await asyncio.to_thread(stock.notify, body="Røyk i avdeling A", title="Brann")
    mine, theirs = srv.requests
    assert (
        (mine.method, mine.target)
        == (theirs.method, theirs.target)
        == (
            "POST",
            "/hook/a%20b?channel=drift",
        )
    )
    assert (
        json.loads(mine.body)
        == json.loads(theirs.body)
        == {
            "version": "1.0",
            "title": "Brann",
            "message": "Røyk i avdeling A",
            "attachments": [],
            "kind": "info",
            "sender": "crisis",
        }
    )
    for name in ("x-token", "authorization", "content-type", "user-agent", "host"):
        assert mine.headers[name] == theirs.headers[name], name
    assert mine.headers["authorization"] == "Basic " + base64.b64encode(b"kari:hemmelig").decode()


async def test_connections_are_kept_alive_and_reused(server: Callable[..., Any]) -> None:
    srv = await server(lambda r: ok())
    t = target(f"json://127.0.0.1:{srv.port}/r")
    for _ in range(5):
        assert await t.async_notify(body="x", title="y")
    await asyncio.gather(
        *(target(f"json://127.0.0.1:{srv.port}/r/{i}").async_notify(body="x") for i in range(20))
    )
    assert len(srv.requests) == 25
    assert srv.connections <= 20


async def test_a_connection_the_server_closes_is_not_reused(server: Callable[..., Any]) -> None:
    srv = await server(lambda r: ok(), close_after=True)
    t = target(f"json://127.0.0.1:{srv.port}/r")
    for _ in range(3):
        assert await t.async_notify(body="x")
        await asyncio.sleep(0.05)  # the server's FIN arrives; the pool drops the connection
    assert srv.connections == 3


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;x=y\r\nok\r\n3\r\n!!!\r\n0\r\n"
        b"X-Trailer: 1\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.0 200 OK\r\n\r\nthe body ends with the connection",
    ],
    ids=["chunked", "100-continue", "204", "until-close"],
)
async def test_response_framings(server: Callable[..., Any], answer: bytes) -> None:
    srv = await server(lambda r: answer, close_after=b"HTTP/1.0" in answer)
    t = target(f"json://127.0.0.1:{srv.port}/r")
    assert await t.async_notify(body="x"), t.crisis_outcome
    assert await t.async_notify(body="x"), t.crisis_outcome  # and the next one works too


async def test_the_client_reads_bodies_and_keeps_the_pool_consistent() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for part in (b"he", b"llo", b" world"):  # in pieces, across reads
            writer.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    poster = webhook.Poster()
    try:
        url = URL(f"http://127.0.0.1:{port}/")
        r = await poster.post("POST", url, headers={}, body=b"{}")
        assert (r.status, r.body) == (200, b"hello world")
    finally:
        await poster.aclose()
        srv.close()
        await srv.wait_closed()


async def test_errors_become_the_receipts_outcome(server: Callable[..., Any]) -> None:
    srv = await server(lambda r: b"HTTP/1.1 500 Boom\r\nContent-Length: 0\r\n\r\n")
    t = target(f"json://127.0.0.1:{srv.port}/r")
    assert not await t.async_notify(body="x")
    assert t.crisis_outcome == ("failed", "HTTP 500")

    srv = await server(lambda r: b"SPDY/9 nonsense\r\n\r\n")
    t = target(f"json://127.0.0.1:{srv.port}/r")
    assert not await t.async_notify(body="x")
    assert t.crisis_outcome[0] == "failed" and "Bad status line" in t.crisis_outcome[1]

    srv = await server(
        lambda r: b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", close_after=True
    )
    t = target(f"json://127.0.0.1:{srv.port}/r")
    assert not await t.async_notify(body="x")
    assert t.crisis_outcome[0] == "failed" and "ClientPayloadError" in t.crisis_outcome[1]

    srv = await server(lambda r: None)  # never answers
    t = target(f"json://127.0.0.1:{srv.port}/r?rto=0.3")
    assert not await t.async_notify(body="x")
    assert t.crisis_outcome == ("timed_out", "no answer within 0.3s (rto)")

    closed = await server(lambda r: ok())
    port = closed.port
    await closed.stop()
    t = target(f"json://127.0.0.1:{port}/r")
    assert not await t.async_notify(body="x")
    assert t.crisis_outcome[0] == "failed"


async def test_a_redirect_is_followed(server: Callable[..., Any]) -> None:
    def script(r: Request) -> bytes:
        if r.target == "/old":
            return b"HTTP/1.1 307 Moved\r\nLocation: /new\r\nContent-Length: 0\r\n\r\n"
        return ok()

    srv = await server(script)
    t = target(f"json://127.0.0.1:{srv.port}/old")
    assert await t.async_notify(body="x"), t.crisis_outcome
    assert [r.target for r in srv.requests][-1] == "/new"
    assert json.loads(srv.requests[-1].body)["message"] == "x"


async def test_redirects_are_limited(server: Callable[..., Any]) -> None:
    srv = await server(
        lambda r: b"HTTP/1.1 307 Again\r\nLocation: /loop\r\nContent-Length: 0\r\n\r\n"
    )
    t = target(f"json://127.0.0.1:{srv.port}/loop")
    assert not await t.async_notify(body="x")
    assert t.crisis_outcome[0] == "failed" and "TooManyRedirects" in t.crisis_outcome[1]
    assert len(srv.requests) == webhook.MAX_REDIRECTS


async def test_a_large_body_is_cut_and_the_next_post_works(
    server: Callable[..., Any],
) -> None:
    big = b"x" * (webhook.KEEP_BODY + 1)
    srv = await server(lambda r: ok(big) if r.target == "/big" else ok())
    poster = webhook.poster()
    r = await poster.post("POST", URL(f"http://127.0.0.1:{srv.port}/big"), headers={}, body=b"")
    assert (r.status, r.body) == (200, big[: webhook.KEEP_BODY])
    r = await poster.post("POST", URL(f"http://127.0.0.1:{srv.port}/ok"), headers={}, body=b"")
    assert (r.status, r.body) == (200, b"ok")


async def test_cookies_are_not_carried_between_targets(server: Callable[..., Any]) -> None:
    srv = await server(lambda r: ok(extra="Set-Cookie: session=kari\r\n"))
    assert await target(f"json://127.0.0.1:{srv.port}/a").async_notify(body="x")
    assert await target(f"json://127.0.0.1:{srv.port}/b").async_notify(body="x")
    assert "cookie" not in srv.requests[-1].headers


async def test_a_header_with_a_line_break_is_refused(server: Callable[..., Any]) -> None:
    srv = await server(lambda r: ok())
    poster = webhook.Poster()
    try:
        with pytest.raises(ValueError):
            await poster.post(
                "POST",
                URL(f"http://127.0.0.1:{srv.port}/"),
                headers={"X-Evil": "a\r\nHost: elsewhere"},
                body=b"{}",
            )
    finally:
        await poster.aclose()
    assert srv.requests == []  # nothing reached the server


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    args = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=x"]
    args += ["-keyout", str(key), "-out", str(cert), "-addext", "subjectAltName=IP:127.0.0.1"]
    subprocess.run(["openssl", *args], check=True, capture_output=True)
    return cert, key


async def test_jsons_over_tls_checks_the_certificate_unless_told_not_to(
    self_signed: tuple[Path, Path],
) -> None:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*self_signed)
    srv = await Server(lambda r: ok()).start_tls(ctx)
    try:
        t = target(f"jsons://127.0.0.1:{srv.port}/secure?verify=no")
        assert await t.async_notify(body="x"), t.crisis_outcome
        assert srv.requests[-1].target == "/secure"
        t = target(f"jsons://127.0.0.1:{srv.port}/secure")  # self-signed: refused
        assert not await t.async_notify(body="x")
        assert t.crisis_outcome[0] == "failed" and "SSL" in t.crisis_outcome[1]
    finally:
        await srv.stop()
        await webhook.close()
