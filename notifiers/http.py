"""A small HTTP/1.1 client for webhook posts: a keep-alive pool, one request per connection.

Why not aiohttp for ``json://``: a dispatcher pass posts thousands of small JSON bodies, and
aiohttp's client costs about 250 µs of CPU per request on the 2-core development machine
(URL objects, multidicts, tracing hooks, timers, stream readers) — 2.5 s of the one core an
asyncio process has for 10,000 recipients. This client does only what a webhook post needs,
in about a quarter of that:

- one request at a time per connection (no pipelining), connections kept alive and reused
  per (scheme, host, port, certificate check), at most ``limit_per_host`` per host and
  ``limit`` in all; an idle connection is closed after ``keepalive`` seconds (aiohttp's 15);
- responses framed by ``Content-Length``, ``Transfer-Encoding: chunked`` or the end of the
  connection, informational (1xx) responses skipped, ``HEAD``/204/304 without a body; the
  body is read to the end (so the connection can be reused) and its first 64 KiB kept;
- a connect timeout and a read timeout (no byte from the server for that long), as
  aiohttp's ``sock_connect``/``sock_read``; TLS with or without certificate verification;
- no redirects, cookies, proxies, compression or retries: a request is sent once (a POST is
  not idempotent; aiohttp does not retry it either). The caller decides what a 3xx means.

Errors are :class:`OSError` (connect/reset), :class:`TimeoutError`, :class:`ProtocolError`
(the server's answer is not HTTP/1.x) or :class:`ValueError` (a header with CR/LF).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from dataclasses import dataclass

MAX_HEAD = 64 * 1024  # status line + headers
MAX_LINE = 8 * 1024  # one chunk-size or trailer line
KEEP_BODY = 64 * 1024  # bytes of the body the caller gets (the rest is read and dropped)


class ProtocolError(OSError):
    """The server's answer is not valid HTTP/1.x (the connection is closed)."""


@dataclass(frozen=True)
class Response:
    status: int
    reason: str
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes


def _tokens(value: str | None) -> set[str]:
    return {t.strip().lower() for t in (value or "").split(",") if t.strip()}


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection and the parser of the response to its current request."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.buf = bytearray()
        self.waiter: asyncio.Future[Response] | None = None
        self.idle_since = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._read_timeout = 0.0
        self._last_read = 0.0
        self._head_only = False
        self._reset_response()

    def _reset_response(self) -> None:
        self._state = "head"  # head, length, chunk-size, chunk-data, chunk-crlf, trailers, eof
        self._remaining = 0
        self._status = 0
        self._reason = ""
        self._headers: dict[str, str] = {}
        self._body = bytearray()
        self.reusable = False

    # --- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.waiter is None or self.waiter.done():
            # Bytes nobody asked for: the connection's framing can no longer be trusted.
            self.close()
            return
        self._last_read = self.loop.time()
        self.buf += data
        self._parse()

    def eof_received(self) -> bool:
        self._finish_on_eof()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._finish_on_eof(exc)
        self._cancel_timer()

    # --- one request ---------------------------------------------------------------------

    def send(
        self, request: bytes, read_timeout: float, head_only: bool
    ) -> asyncio.Future[Response]:
        assert self.transport is not None
        self._reset_response()
        self._head_only = head_only
        self.waiter = self.loop.create_future()
        self.buf.clear()
        self.transport.write(request)
        self._read_timeout = read_timeout
        self._last_read = self.loop.time()
        if read_timeout > 0:
            self._timer = self.loop.call_at(self._last_read + read_timeout, self._check_timeout)
        return self.waiter

    def _check_timeout(self) -> None:
        self._timer = None
        if self.waiter is None or self.waiter.done():
            return
        due = self._last_read + self._read_timeout
        if self.loop.time() < due:  # data arrived meanwhile: wait for the rest
            self._timer = self.loop.call_at(due, self._check_timeout)
            return
        self.waiter.set_exception(TimeoutError(f"no answer within {self._read_timeout:g}s"))
        self.close()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self) -> None:
        self.closed = True
        self._cancel_timer()
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, exc: BaseException) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        self.close()

    def _done(self, reusable: bool) -> None:
        self._cancel_timer()
        self.reusable = reusable and not self.buf and not self.closed
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(
                Response(self._status, self._reason, self._headers, bytes(self._body))
            )

    def _keep(self, data: bytes | bytearray) -> None:
        room = KEEP_BODY - len(self._body)
        if room > 0:
            self._body += data[:room]

    def _finish_on_eof(self, exc: Exception | None = None) -> None:
        if self.waiter is None or self.waiter.done():
            return
        if self._state == "eof":  # a body framed by the end of the connection
            self._keep(self.buf)
            self.buf.clear()
            self._done(reusable=False)
            return
        if exc is not None and isinstance(exc, OSError):
            self._fail(exc)
        else:
            self._fail(ConnectionResetError("the server closed the connection mid-response"))

    # --- the response parser -------------------------------------------------------------

    def _parse(self) -> None:
        try:
            while self._step():
                pass
        except ProtocolError as exc:
            self._fail(exc)

    def _step(self) -> bool:
        """Advance the parser by one element; False when it needs more bytes (or is done)."""
        buf, state = self.buf, self._state
        if state == "head":
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    raise ProtocolError("response head too large")
                return False
            head = bytes(buf[:end]).decode("latin-1")
            del buf[: end + 4]
            return self._head(head)
        if state == "length":
            n = min(self._remaining, len(buf))
            self._keep(buf[:n])
            del buf[:n]
            self._remaining -= n
            if self._remaining == 0:
                self._done(reusable=self._keep_alive)
            return False
        if state == "eof":
            self._keep(buf)
            buf.clear()
            return False
        if state in ("chunk-size", "trailers"):
            end = buf.find(b"\r\n")
            if end < 0:
                if len(buf) > MAX_LINE:
                    raise ProtocolError("chunk line too long")
                return False
            line = bytes(buf[:end])
            del buf[: end + 2]
            if state == "trailers":
                if not line:
                    self._done(reusable=self._keep_alive)
                    return False
                return True
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size {line[:40]!r}") from None
            if size < 0:
                raise ProtocolError("negative chunk size")
            self._state, self._remaining = ("trailers", 0) if size == 0 else ("chunk-data", size)
            return True
        if state == "chunk-data":
            n = min(self._remaining, len(buf))
            self._keep(buf[:n])
            del buf[:n]
            self._remaining -= n
            if self._remaining:
                return False
            self._state = "chunk-crlf"
            return True
        if state == "chunk-crlf":
            if len(buf) < 2:
                return False
            if buf[:2] != b"\r\n":
                raise ProtocolError("chunk not followed by CRLF")
            del buf[:2]
            self._state = "chunk-size"
            return True
        return False  # pragma: no cover - every state is handled above

    def _head(self, head: str) -> bool:
        lines = head.split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
            raise ProtocolError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
        status = int(code)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise ProtocolError(f"bad header line {line[:80]!r}")
            key, value = name.lower(), value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        if 100 <= status < 200:
            if status == 101:
                raise ProtocolError("unexpected protocol switch (101)")
            return True  # informational: the real response follows
        self._status, self._reason, self._headers = status, reason, headers
        connection = _tokens(headers.get("connection"))
        if version == "HTTP/1.1":
            self._keep_alive = "close" not in connection
        else:
            self._keep_alive = "keep-alive" in connection
        if self._head_only or status in (204, 304):
            self._done(reusable=self._keep_alive)
            return False
        encoding = headers.get("transfer-encoding")
        if encoding is not None:
            if encoding.rsplit(",", 1)[-1].strip().lower() == "chunked":
                self._state = "chunk-size"
                return True
            self._state, self._keep_alive = "eof", False
            return True
        length = headers.get("content-length")
        if length is not None:
            values = {v.strip() for v in length.split(",")}
            if len(values) != 1 or not next(iter(values)).isdigit():
                raise ProtocolError(f"bad Content-Length {length[:40]!r}")
            self._remaining = int(values.pop())
            if self._remaining == 0:
                self._done(reusable=self._keep_alive)
                return False
            self._state = "length"
            return True
        self._state, self._keep_alive = "eof", False
        return True


_Key = tuple[bool, str, int, bool]  # (tls, host, port, verify certificate)
_BAD_NAME = frozenset("\r\n :")
_BAD_TARGET = frozenset("\r\n ")


class Client:
    """A pool of keep-alive connections; use it from one event loop."""

    def __init__(
        self, *, limit: int = 256, limit_per_host: int = 128, keepalive: float = 15.0
    ) -> None:
        self.limit_per_host = limit_per_host
        self.keepalive = keepalive
        self._total = asyncio.Semaphore(limit)
        self._per_host: dict[_Key, asyncio.Semaphore] = {}
        self._idle: dict[_Key, deque[_Connection]] = {}
        self._ssl: dict[bool, ssl.SSLContext] = {}
        self.closed = False

    def _context(self, verify: bool) -> ssl.SSLContext:
        ctx = self._ssl.get(verify)
        if ctx is None:
            ctx = ssl.create_default_context()
            if not verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            self._ssl[verify] = ctx
        return ctx

    async def request(
        self,
        method: str,
        *,
        tls: bool,
        host: str,
        port: int | None,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes = b"",
        connect_timeout: float = 4.0,
        read_timeout: float = 4.0,
        verify: bool = True,
    ) -> Response:
        """Send one request (``target`` is the path and query) and read its response."""
        if self.closed:
            raise RuntimeError("the HTTP client is closed")
        port = port or (443 if tls else 80)
        bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        authority = f"[{bare}]" if ":" in bare else bare
        if port != (443 if tls else 80):
            authority += f":{port}"
        lines = [f"{method} {target or '/'} HTTP/1.1", f"Host: {authority}"]
        for name, value in headers:
            if not name or _BAD_NAME.intersection(name) or "\r" in value or "\n" in value:
                raise ValueError(f"bad header {name!r}: a name or value with CR/LF")
            lines.append(f"{name}: {value}")
        if _BAD_NAME.intersection(method) or _BAD_TARGET.intersection(target):
            raise ValueError("bad request line: CR/LF or a space in the method or target")
        lines.append(f"Content-Length: {len(body)}")
        request = "\r\n".join(lines).encode("utf-8") + b"\r\n\r\n" + body
        key: _Key = (tls, bare, port, verify)
        per_host = self._per_host.get(key)
        if per_host is None:
            per_host = self._per_host[key] = asyncio.Semaphore(self.limit_per_host)
        async with per_host, self._total:
            conn = self._take(key)
            if conn is None:
                conn = await self._connect(key, connect_timeout)
            try:
                response = await conn.send(request, read_timeout, method.upper() == "HEAD")
            except BaseException:
                conn.close()
                raise
            if conn.reusable and not conn.closed and not self.closed:
                conn.idle_since = time.monotonic()
                self._idle.setdefault(key, deque()).append(conn)
            else:
                conn.close()
            return response

    def _take(self, key: _Key) -> _Connection | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        expired = time.monotonic() - self.keepalive
        while idle and idle[0].idle_since < expired:  # the oldest first: close the stale
            idle.popleft().close()
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to be closed
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                return conn
            conn.close()
        return None

    async def _connect(self, key: _Key, connect_timeout: float) -> _Connection:
        tls, host, port, verify = key
        loop = asyncio.get_running_loop()
        coro = loop.create_connection(
            lambda: _Connection(loop),
            host,
            port,
            ssl=self._context(verify) if tls else None,
        )
        try:
            _, conn = await asyncio.wait_for(coro, connect_timeout if connect_timeout > 0 else None)
        except TimeoutError:
            raise TimeoutError(f"no connection within {connect_timeout:g}s") from None
        return conn

    async def aclose(self) -> None:
        self.closed = True
        for idle in self._idle.values():
            while idle:
                idle.pop().close()
        self._idle.clear()
