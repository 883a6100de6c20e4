"""Channels: apprise targets, cached per URL, and a natively async ``json://`` plugin.

apprise 2.2's ``async_notify`` runs every plugin's blocking ``send()`` (``requests``, a new
connection per message) in a thread pool: about 550 messages/s on the 2-core development
machine. :class:`AsyncJSON` keeps apprise's ``json://``/``jsons://`` URL grammar and JSON
payload exactly (``version``, ``title``, ``message``, ``attachments``, ``type``, plus
``:key=value`` extras, ``+header`` and ``-param``) but sends over one keep-alive pool of
:mod:`notifiers.http` (a lean HTTP/1.1 client: aiohttp's client costs four times the CPU per
post); a redirect is followed through aiohttp.
It is registered explicitly by :func:`register_plugins` (nothing happens at import time).
Every other scheme (mailto, workflows, slack, matrix, …) is apprise's own plugin.
"""

from __future__ import annotations

import asyncio
import base64
import json
import warnings
import weakref
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import apprise
from apprise.manager_plugins import NotificationManager
from apprise.plugins.custom_json import NotifyJSON

from notifiers import http

_sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession] = (
    weakref.WeakKeyDictionary()
)
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, http.Client] = (
    weakref.WeakKeyDictionary()
)
_registered = False


def http_session() -> aiohttp.ClientSession:
    """One pooled client session per event loop (keep-alive to each host)."""
    loop = asyncio.get_running_loop()
    session = _sessions.get(loop)
    if session is None or session.closed:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256, limit_per_host=128, ttl_dns_cache=300)
        )
        _sessions[loop] = session
    return session


def http_client() -> http.Client:
    """One keep-alive pool per event loop for the webhook posts (see :mod:`notifiers.http`)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.closed:
        client = http.Client(limit=256, limit_per_host=128)
        _clients[loop] = client
    return client


async def close_http_session() -> None:
    loop = asyncio.get_running_loop()
    client = _clients.pop(loop, None)
    if client is not None:
        await client.aclose()
    session = _sessions.pop(loop, None)
    if session is not None and not session.closed:
        await session.close()


class AsyncJSON(NotifyJSON):
    """apprise's JSON webhook with a native ``async_notify`` (same URL and payload)."""

    service_name = "JSON (async, crisis)"
    #: (status, error) of the last failed send, for the delivery receipt: apprise itself
    #: reports only success/failure per target (a dispatcher pass uses a target once).
    crisis_outcome: tuple[str, str] | None = None

    def url(self, privacy: bool = False, *args: Any, **kwargs: Any) -> str:
        """apprise rebuilds the URL for every result (~0.15 ms); a target never changes."""
        if args or kwargs:
            return str(super().url(privacy, *args, **kwargs))
        cache: dict[bool, str] = self.__dict__.setdefault("_crisis_url_cache", {})
        if privacy not in cache:
            cache[privacy] = str(super().url(privacy))
        return cache[privacy]

    def url_id(self, *args: Any, **kwargs: Any) -> str | None:
        if args or kwargs:
            return super().url_id(*args, **kwargs)
        if "_crisis_url_id" not in self.__dict__:
            self.__dict__["_crisis_url_id"] = super().url_id()
        return self.__dict__["_crisis_url_id"]

    async def async_notify(
        self,
        body: str,
        title: str = "",
        notify_type: Any = apprise.NotifyType.INFO,
        **_: Any,
    ) -> bool:
        payload: dict[str, Any] = {
            "version": self.json_version,
            "title": title,
            "message": body,
            "attachments": [],
            "type": notify_type.value if hasattr(notify_type, "value") else str(notify_type),
        }
        for key, value in self.payload_extras.items():
            if key in payload:
                if not value:
                    del payload[key]
                else:
                    payload[value] = payload.pop(key)
            else:
                payload[key] = value
        data = json.dumps(payload).encode("utf-8")
        self.crisis_outcome = None
        try:
            response = await http_client().request(
                str(self.method),
                tls=bool(self.secure),
                host=str(self.host),
                port=self.port if isinstance(self.port, int) else None,
                target=self._target(),
                headers=self._request_headers(),
                body=data,
                connect_timeout=self.socket_connect_timeout or 0,
                read_timeout=self.socket_read_timeout or 0,
                verify=bool(self.verify_certificate),
            )
            status = response.status
            if 300 <= status < 400 and "location" in response.headers:
                status = await self._follow_redirect(data)  # rare: aiohttp follows it
        except TimeoutError:
            return self._failed(
                "timed_out", f"no answer within {self.socket_read_timeout:g}s (rto)"
            )
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            self.logger.warning("%s: %s", type(exc).__name__, exc)
            return self._failed("failed", f"{type(exc).__name__}: {exc}")
        if 200 <= status < 300:
            return True
        self.logger.warning("HTTP %s from %s", status, self.host)
        return self._failed("failed", f"HTTP {status}")

    def _failed(self, status: str, error: str) -> bool:
        self.crisis_outcome = (status, error)
        return False

    def _target(self) -> str:
        """The request target: apprise's path (percent-encoded as aiohttp would) and params."""
        target = quote(self.fullpath or "/", safe="/:@!$&'()*+,;=%~")
        if self.params:
            target += ("&" if "?" in target else "?") + urlencode(self.params)
        return target

    def _request_headers(self) -> list[tuple[str, str]]:
        headers = {
            "User-Agent": str(self.app_id),
            "Accept": "*/*",
            "Content-Type": "application/json",
        }
        if self.user:
            token = f"{self.user}:{self.password or ''}".encode("latin1")
            headers["Authorization"] = "Basic " + base64.b64encode(token).decode("ascii")
        lower = {k.lower(): k for k in headers}
        for name, value in self.headers.items():  # +Header=value overrides a default
            headers.pop(lower.get(name.lower(), name), None)
            headers[name] = str(value)
        return list(headers.items())

    async def _follow_redirect(self, data: bytes) -> int:
        """Send the request again through aiohttp, which follows redirects; the final status."""
        url = f"{'https' if self.secure else 'http'}://{self.host}"
        if isinstance(self.port, int):
            url += f":{self.port}"
        url += self.fullpath
        auth = aiohttp.BasicAuth(self.user, self.password or "") if self.user else None
        timeout = aiohttp.ClientTimeout(
            sock_connect=self.socket_connect_timeout, sock_read=self.socket_read_timeout
        )
        headers = {"User-Agent": self.app_id, "Content-Type": "application/json", **self.headers}
        async with http_session().request(
            str(self.method),
            url,
            data=data,
            params=self.params or None,
            headers=headers,
            auth=auth,
            timeout=timeout,
            ssl=True if self.verify_certificate else False,
        ) as response:
            await response.read()
            return response.status


def register_plugins() -> None:
    """Make ``json://`` and ``jsons://`` use :class:`AsyncJSON` in this process."""
    global _registered
    if not _registered:
        with warnings.catch_warnings():
            # apprise's e-mail plugin imports the stdlib's deprecated imghdr (Python 3.11/12).
            warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*imghdr")
            manager = NotificationManager()
            manager.load_modules()
        manager.add(AsyncJSON, schemas=["json", "jsons"], force=True)
        _registered = True


def is_direct(instance: Any) -> bool:
    """A target the dispatcher may call without apprise's wrapper: our own async plugin,
    without an apprise ``retry=`` (the dispatcher's own back-off does the retrying)."""
    return isinstance(instance, AsyncJSON) and not getattr(instance, "retry", 0)


class Targets:
    """apprise plugin instances, built once per URL (parsing is the costly part)."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    def get(self, url: str) -> Any | None:
        instance = self._cache.get(url)
        if instance is None:
            instance = apprise.Apprise.instantiate(url)
            if instance is None:
                return None
            self._cache[url] = instance
        return instance

    def warm(self, urls: list[str]) -> int:
        return sum(1 for url in urls if self.get(url) is not None)
