"""Channels: apprise targets, cached per URL, and a natively async ``json://`` plugin.

apprise 2.2's ``async_notify`` runs every plugin's blocking ``send()`` (``requests``, a new
connection per message) in a thread pool: about 550 messages/s on the 2-core development
machine. :class:`AsyncJSON` keeps apprise's ``json://``/``jsons://`` URL grammar and JSON
payload exactly (``version``, ``title``, ``message``, ``attachments``, ``type``, plus
``:key=value`` extras, ``+header`` and ``-param``) but sends over one keep-alive aiohttp pool.
It is registered explicitly by :func:`register_plugins` (nothing happens at import time).
Every other scheme (mailto, workflows, slack, matrix, …) is apprise's own plugin.
"""

from __future__ import annotations

import asyncio
import json
import warnings
import weakref
from typing import Any

import aiohttp
import apprise
from apprise.manager_plugins import NotificationManager
from apprise.plugins.custom_json import NotifyJSON

_sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession] = (
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


async def close_http_session() -> None:
    loop = asyncio.get_running_loop()
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
            "type": getattr(notify_type, "value", str(notify_type)),
        }
        for key, value in self.payload_extras.items():
            if key in payload:
                if not value:
                    del payload[key]
                else:
                    payload[value] = payload.pop(key)
            else:
                payload[key] = value
        headers = {"User-Agent": self.app_id, "Content-Type": "application/json", **self.headers}
        url = f"{'https' if self.secure else 'http'}://{self.host}"
        if isinstance(self.port, int):
            url += f":{self.port}"
        url += self.fullpath
        self.crisis_outcome = None
        auth = aiohttp.BasicAuth(self.user, self.password or "") if self.user else None
        timeout = aiohttp.ClientTimeout(
            sock_connect=self.socket_connect_timeout, sock_read=self.socket_read_timeout
        )
        try:
            async with http_session().request(
                str(self.method),
                url,
                data=json.dumps(payload),
                params=self.params or None,
                headers=headers,
                auth=auth,
                timeout=timeout,
                ssl=True if self.verify_certificate else False,
            ) as response:
                await response.read()
                if 200 <= response.status < 300:
                    return True
                self.crisis_outcome = ("failed", f"HTTP {response.status}")
                self.logger.warning("HTTP %s from %s", response.status, self.host)
                return False
        except TimeoutError:
            self.crisis_outcome = (
                "timed_out",
                f"no answer within {self.socket_read_timeout:g}s (rto)",
            )
            return False
        except (aiohttp.ClientError, OSError) as exc:
            self.crisis_outcome = ("failed", f"{type(exc).__name__}: {exc}")
            self.logger.warning("%s: %s", type(exc).__name__, exc)
            return False


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
