"""Channels: apprise targets, cached per URL, and a natively async ``json://`` plugin.

apprise 2.2's ``async_notify`` runs every plugin's blocking ``send()`` (``requests``, a new
connection per message) in a thread pool. :class:`AsyncJSON` keeps apprise's
``json://``/``jsons://`` URL grammar and JSON payload exactly (``version``, ``title``,
``message``, ``attachments``, ``type``, plus ``:key=value`` extras, ``+header`` and
``-param``) but posts through the event loop's shared aiohttp session
(:mod:`notifiers.webhook`). It is registered explicitly by :func:`register_plugins` (nothing
happens at import time). :class:`Inbox` (``inbox://PERSON/CHANNEL``) is the built-in local
inbox of the demo: nothing leaves the machine; the dispatcher stores each message it delivers
there (:class:`notifiers.models.InboxMessage`). Every other scheme (mailto, workflows,
slack, matrix, …) is apprise's own plugin.
"""

from __future__ import annotations

import base64
import json
import sys
import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import apprise
from apprise.manager_plugins import NotificationManager
from apprise.plugins.base import NotifyBase
from apprise.plugins.custom_json import NotifyJSON
from yarl import URL

from notifiers import webhook

_registered = False


@dataclass(frozen=True)
class _Request:
    """What every post of one target shares (a target's URL never changes)."""

    method: str
    version: str
    extras: tuple[tuple[str, str], ...]  # apprise's ``:key=value`` payload extras, in order
    url: URL
    headers: Any  # CIMultiDict[str]
    timeouts: aiohttp.ClientTimeout
    verify: bool


@lru_cache(maxsize=512)
def _payload(
    version: str, extras: tuple[tuple[str, str], ...], title: str, body: str, kind: str
) -> bytes:
    """apprise's JSON payload as bytes; recipients of one update mostly share one text."""
    payload: dict[str, Any] = {
        "version": version,
        "title": title,
        "message": body,
        "attachments": [],
        "type": kind,
    }
    for key, value in extras:
        if key in payload:
            if not value:
                del payload[key]
            else:
                payload[value] = payload.pop(key)
        else:
            payload[key] = value
    return json.dumps(payload).encode("utf-8")


class AsyncJSON(NotifyJSON):
    """apprise's JSON webhook with a native ``async_notify`` (same URL and payload)."""

    service_name = "JSON (async, crisis)"
    #: (status, error) of the last failed send, for the delivery receipt: apprise itself
    #: reports only success/failure per target (a dispatcher pass uses a target once).
    crisis_outcome: tuple[str, str] | None = None

    def url(self, privacy: bool = False, *args: Any, **kwargs: Any) -> str:
        """apprise rebuilds the URL for every result; a target never changes, so build it once."""
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
        kind = notify_type.value if hasattr(notify_type, "value") else str(notify_type)
        request = self._request()
        data = _payload(request.version, request.extras, title, body, kind)
        self.crisis_outcome = None
        try:
            response = await webhook.poster().post(
                request.method,
                request.url,
                headers=request.headers,
                body=data,
                timeouts=request.timeouts,
                verify=request.verify,
            )
        except aiohttp.ConnectionTimeoutError:
            return self._failed(
                "timed_out", f"no connection within {self.socket_connect_timeout:g}s (cto)"
            )
        except TimeoutError:
            return self._failed(
                "timed_out", f"no answer within {self.socket_read_timeout:g}s (rto)"
            )
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            self.logger.warning("%s: %s", type(exc).__name__, exc)
            return self._failed("failed", f"{type(exc).__name__}: {exc}")
        if 200 <= response.status < 300:
            return True
        self.logger.warning("HTTP %s from %s", response.status, self.host)
        return self._failed("failed", f"HTTP {response.status}")

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

    def prepare(self) -> None:
        """Build what every post shares now (:class:`Targets` does, at start-up)."""
        self._request()

    def _request(self) -> _Request:
        """Built on first use and kept: URL, headers and timeouts of every post."""
        request: _Request | None = self.__dict__.get("_crisis_request")
        if request is None:
            host = str(self.host)
            authority = f"[{host}]" if ":" in host and not host.startswith("[") else host
            if isinstance(self.port, int):
                authority += f":{self.port}"
            scheme = "https" if self.secure else "http"
            request = _Request(
                method=str(self.method).upper(),
                version=str(self.json_version),
                extras=tuple((str(k), str(v)) for k, v in self.payload_extras.items()),
                url=URL(f"{scheme}://{authority}{self._target()}", encoded=True),
                headers=webhook.headers(dict(self._request_headers())),
                timeouts=webhook.timeout(self.socket_connect_timeout, self.socket_read_timeout),
                verify=bool(self.verify_certificate),
            )
            self.__dict__["_crisis_request"] = request
        return request


class Inbox(NotifyBase):
    """The built-in local inbox: ``inbox://PERSON/CHANNEL`` (both only name the mailbox).

    Sending always succeeds and touches no network. The plugin has no database: the
    dispatcher, which knows the recipient, update and exercise, stores each message it
    delivers here in the transaction that records the attempt as ``sent``.
    """

    service_name = "crisis local inbox"  # type: ignore[assignment]
    protocol = "inbox"  # type: ignore[assignment]
    secure_protocol = "inbox"  # type: ignore[assignment]
    setup_url = "https://github.com/caronc/apprise/wiki/DevelopCustomPluginModule"  # type: ignore[assignment]
    crisis_outcome: tuple[str, str] | None = None

    def __init__(self, mailbox: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mailbox = mailbox or str(self.host or "")

    def send(self, *args: Any, **kwargs: Any) -> bool:
        return True

    async def async_notify(self, *args: Any, **kwargs: Any) -> bool:
        return True

    def url(self, *args: Any, **kwargs: Any) -> str:
        return f"inbox://{self.mailbox}{self.fullpath or ''}"

    def url_identifier(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        return ("inbox", self.mailbox, str(self.fullpath or ""))

    @staticmethod
    def parse_url(url: Any, *args: Any, **kwargs: Any) -> Any:
        results: dict[str, Any] | None = NotifyBase.parse_url(url, verify_host=False)
        if not results or not results.get("host"):
            return None
        results["mailbox"] = str(results["host"])
        return results


def is_inbox(instance: Any) -> bool:
    return isinstance(instance, Inbox)


def register_plugins() -> None:
    """Make ``json://`` and ``jsons://`` use :class:`AsyncJSON`, and ``inbox://`` the local
    inbox, in this process."""
    global _registered
    if not _registered:
        with warnings.catch_warnings():
            # apprise's e-mail plugin imports the stdlib's deprecated imghdr (Python 3.11/12).
            warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*imghdr")
            manager = NotificationManager()
            manager.load_modules()
        manager.add(AsyncJSON, schemas=["json", "jsons"], force=True)
        manager.add(Inbox, schemas=["inbox"], force=True)
        _registered = True


def is_direct(instance: Any) -> bool:
    """A target the dispatcher may call without apprise's wrapper: our own async plugin,
    without an apprise ``retry=`` (the dispatcher's own back-off does the retrying)."""
    if isinstance(instance, Inbox):
        return True
    return isinstance(instance, AsyncJSON) and not getattr(instance, "retry", 0)


def is_email(instance: Any) -> bool:
    """apprise's e-mail plugin (``mailto://``, ``mailtos://``; loaded by register_plugins)."""
    module = sys.modules.get("apprise.plugins.email.base")
    return module is not None and isinstance(instance, module.NotifyEmail)


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
            if isinstance(instance, AsyncJSON):
                instance.prepare()
            self._cache[url] = instance
        return instance

    def warm(self, urls: list[str]) -> int:
        return sum(1 for url in urls if self.get(url) is not None)
