"""Webhook posts over aiohttp: one client session and one connector per event loop.

A dispatcher runs in one event loop, so every ``json://`` target of a dispatcher shares one
:class:`Poster` (one keep-alive pool) instead of opening connections of its own. The session
is set up for many small posts to known targets:

- connections are kept alive and reused per (host, port, TLS settings), at most
  ``limit_per_host`` per host and ``limit`` in all; an idle one is closed after ``keepalive``;
- no cookies (a dummy jar: targets on one host never see each other's cookies), no proxy or
  netrc from the environment, no trace hooks, no response decompression;
- a connect timeout and a read timeout (no byte from the server for that long) per request,
  no total timeout; a request is sent once (aiohttp never retries a POST);
- redirects are followed up to ``max_redirects`` (307/308 resend the body; 301/302/303 turn a
  POST into a GET, as browsers do); credentials are dropped on a redirect to another origin;
- the first :data:`KEEP_BODY` bytes of a response body are read and returned; of a longer
  body the rest is not read and its connection is closed instead of reused. A body cut
  short by the server is an error.

Errors are :class:`aiohttp.ClientError` (connect, TLS, protocol, payload, redirects),
:class:`TimeoutError` (aiohttp's connect and read timeouts are both) and :class:`ValueError`
(a header or target with CR/LF).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import aiohttp
from multidict import CIMultiDict
from yarl import URL

KEEP_BODY = 64 * 1024  # bytes of a response body that are read and returned
CONNECT_TIMEOUT = 4.0
READ_TIMEOUT = 4.0
MAX_REDIRECTS = 5


@dataclass(frozen=True)
class Response:
    status: int
    reason: str
    body: bytes  # the first KEEP_BODY bytes of the body


@lru_cache(maxsize=64)
def timeout(connect: float | None, read: float | None) -> aiohttp.ClientTimeout:
    """The (shared, immutable) timeout object for a connect and read timeout; 0: none."""
    return aiohttp.ClientTimeout(total=None, sock_connect=connect or None, sock_read=read or None)


class Poster:
    """One aiohttp session and connector; use it from the event loop that created it."""

    def __init__(
        self,
        *,
        limit: int = 256,
        limit_per_host: int = 128,
        keepalive: float = 15.0,
        max_redirects: int = MAX_REDIRECTS,
    ) -> None:
        self.max_redirects = max_redirects
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=limit,
                limit_per_host=limit_per_host,
                keepalive_timeout=keepalive,
                ttl_dns_cache=300,
            ),
            timeout=timeout(CONNECT_TIMEOUT, READ_TIMEOUT),
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            skip_auto_headers=("Accept-Encoding",),
            trust_env=False,
        )

    @property
    def closed(self) -> bool:
        return self.session.closed

    async def post(
        self,
        method: str,
        url: URL,
        *,
        headers: Mapping[str, str],
        body: bytes,
        timeouts: aiohttp.ClientTimeout | None = None,
        verify: bool = True,
    ) -> Response:
        """Send ``body`` (with the caller's own Content-Type header) and read the answer."""
        response = await self.session.request(
            method,
            url,
            data=body,
            headers=headers,
            timeout=timeouts or self.session.timeout,
            ssl=verify,
            max_redirects=self.max_redirects,
        )
        try:
            content = response.content
            if content.is_eof():  # the whole body came with the head: the usual case
                data = content.read_nowait(KEEP_BODY)
            else:
                buf = bytearray()
                while len(buf) < KEEP_BODY and not content.at_eof():
                    buf += await content.read(KEEP_BODY - len(buf))
                data = bytes(buf)
            return Response(response.status, response.reason or "", data)
        finally:
            response.release()

    async def aclose(self) -> None:
        await self.session.close()


_posters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Poster] = weakref.WeakKeyDictionary()


def poster() -> Poster:
    """The running event loop's :class:`Poster` (made on first use)."""
    loop = asyncio.get_running_loop()
    p = _posters.get(loop)
    if p is None or p.closed:
        p = _posters[loop] = Poster()
    return p


async def close() -> None:
    """Close the running event loop's :class:`Poster`, if it has one."""
    p = _posters.pop(asyncio.get_running_loop(), None)
    if p is not None:
        await p.aclose()


def headers(items: Mapping[str, str]) -> CIMultiDict[str]:
    """Request headers as aiohttp keeps them (build once per target, reuse per request)."""
    return CIMultiDict(items)
