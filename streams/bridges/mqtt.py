"""MQTT sensors → events: ``kriminalomsorgen/<unit>/<sensor-kind>/<sensor-id>`` + JSON payload.

The payload is the event's ``data``; the keys ``id``, ``time``, ``exercise`` and ``type`` (to
refine a kind, e.g. ``ek_tamper``) belong to the envelope, and a ``data`` object, when present,
is taken as the data instead. Without an ``id`` the event id is a hash of topic, payload and
time (the payload's ``time``, else the receipt time). Messages are subscribed with QoS 1 and
acknowledged only after the event is durable (Kafka or the outbox); invalid ones go to
``crisis.events.dlq`` with the reason. The session is persistent (fixed client id,
clean_session off), so messages that arrive while the bridge is down are delivered later.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import ssl
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomqtt

from crisis.domain.organisation import load_organisation
from crisis.kafka.producer import EventProducer
from crisis.settings import Settings
from crisis.sources import catalogue
from crisis.sources.events import EVENT_TYPES, PREFIX, Envelope, EventError, validate_event
from streams.bridges.common import bridge_producer, serve, setup_logging

log = logging.getLogger("crisis.bridge.mqtt")

DEFAULT_TOPIC = "kriminalomsorgen/+/+/+"
ROOT = "kriminalomsorgen"
_ENVELOPE_KEYS = ("id", "time", "exercise", "type", "data")


class Rejected(Exception):
    """A message that cannot become an event; ``errors`` in the contract's shape."""

    def __init__(self, reason: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.errors = errors


def _reject(field: str, message: str) -> Rejected:
    return Rejected(message, [{"index": None, "field": field, "message": message}])


def sensor_type(kind: str, override: Any = None) -> str:
    """Full event type for a topic's sensor kind (or the payload's ``type``).

    A kind is a sensor type's own name or one of its aliases in the catalogue (``pust``).
    """
    if isinstance(override, str) and override:
        name = override if override.startswith(PREFIX) else PREFIX + "sensor." + override
        if name not in EVENT_TYPES:
            raise _reject("type", f"unknown event type {override!r}")
        return name
    found = catalogue.for_topic(kind.lower().replace("-", "_"))
    if found is None:
        known = ", ".join(catalogue.topic_names())
        raise _reject("topic", f"unknown sensor kind {kind!r} (known: {known})")
    return found.type


def message_to_event(
    topic: str, payload: bytes, *, received_at: datetime, known_units: Collection[str]
) -> Envelope:
    """The validated envelope for one MQTT message, or ``Rejected``."""
    levels = topic.split("/")
    if len(levels) < 4 or levels[-4] != ROOT or not all(levels[-3:]):
        raise _reject("topic", f"topic {topic!r} is not {ROOT}/<unit>/<sensor-kind>/<sensor-id>")
    unit, kind, sensor_id = levels[-3:]
    try:
        body = json.loads(payload)
    except ValueError as exc:
        raise _reject("payload", f"the payload is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise _reject("payload", "the payload must be a JSON object")
    data = (
        body["data"]
        if isinstance(body.get("data"), dict)
        else {k: v for k, v in body.items() if k not in _ENVELOPE_KEYS}
    )
    when = body.get("time") if isinstance(body.get("time"), str) else None
    stamp = when or received_at.isoformat().replace("+00:00", "Z")
    event_id = body.get("id")
    if not event_id:
        digest = hashlib.sha256(f"{topic}\n{stamp}\n".encode() + payload).hexdigest()
        event_id = f"mqtt-{digest[:32]}"
    raw: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(event_id),
        "source": f"/units/{unit}/sensors/{sensor_id}",
        "type": sensor_type(kind, body.get("type")),
        "time": stamp,
        "subject": unit,
        "unit": unit,
        "datacontenttype": "application/json",
        "data": data,
    }
    if body.get("exercise"):
        raw["exercise"] = body["exercise"]
    try:
        return validate_event(raw, known_units=set(known_units))
    except EventError as exc:
        raise Rejected(str(exc), exc.errors) from None


async def handle(
    producer: EventProducer,
    topic: str,
    payload: bytes,
    *,
    known_units: Collection[str],
    received_at: datetime | None = None,
) -> bool:
    """Produce the event or dead-letter it; True when it was valid. Returns once durable."""
    try:
        envelope = message_to_event(
            topic, payload, received_at=received_at or datetime.now(UTC), known_units=known_units
        )
    except Rejected as exc:
        text = payload.decode("utf-8", "replace")
        levels = topic.split("/")
        unit = levels[-3] if len(levels) >= 4 and levels[-3] in known_units else None
        await producer.dead_letter(
            {"mqtt_topic": topic, "payload": text},
            reason=exc.reason,
            errors=exc.errors,
            origin="bridge:mqtt",
            unit=unit,
        )
        log.warning("dead-lettered message on %s: %s", topic, exc.reason)
        return False
    await producer.accept([envelope])
    return True


def split_url(url: str) -> tuple[str, str | None]:
    """``mqtt://HOST:PORT/a/+/#`` → (``mqtt://HOST:PORT``, ``a/+/#``): the path, if any, is the
    subscription filter, taken verbatim (``#`` included, which a URL would call a fragment)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url, None
    netloc, slash, path = rest.partition("/")
    return f"{scheme}://{netloc}", (unquote(path) if slash and path else None)


def _client(url: str, client_id: str) -> aiomqtt.Client:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp"):
        raise SystemExit(f"--url must be mqtt://HOST:PORT or mqtts://HOST:PORT, not {url!r}")
    tls = ssl.create_default_context() if parts.scheme == "mqtts" else None
    return aiomqtt.Client(
        hostname=parts.hostname or "127.0.0.1",
        port=parts.port or (8883 if tls else 1883),
        username=parts.username,
        password=parts.password,
        identifier=client_id,
        clean_session=False,
        tls_context=tls,
    )


async def run_bridge(
    *,
    url: str,
    topic: str,
    producer: EventProducer,
    known_units: Collection[str],
    client_id: str = "crisis-bridge-mqtt",
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Subscribe and bridge until ``stop`` is set; reconnects with back-off."""
    stop = stop or asyncio.Event()
    backoff = 0.5
    while not stop.is_set():
        try:
            async with _client(url, client_id) as client:
                paho: Any = getattr(client, "_client", None)  # ack only once durable
                manual = paho is not None and hasattr(paho, "manual_ack_set")
                if manual:
                    paho.manual_ack_set(True)
                await client.subscribe(topic, qos=1)
                log.info("subscribed to %s on %s", topic, url)
                backoff = 0.5
                if ready is not None:
                    ready.set()
                messages = aiter(client.messages)
                while not stop.is_set():
                    get = asyncio.ensure_future(anext(messages))
                    stopped = asyncio.ensure_future(stop.wait())
                    done, _ = await asyncio.wait({get, stopped}, return_when="FIRST_COMPLETED")
                    if get not in done:
                        get.cancel()
                        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                            await get
                        break
                    stopped.cancel()
                    message = get.result()
                    await handle(
                        producer,
                        str(message.topic),
                        bytes(message.payload)
                        if isinstance(message.payload, bytes | bytearray)
                        else str(message.payload).encode(),
                        known_units=known_units,
                    )
                    if manual and message.qos > 0:
                        paho.ack(message.mid, message.qos)
        except aiomqtt.MqttError as exc:
            log.warning("MQTT %s: %s; reconnecting in %.1f s", url, exc, backoff)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff)
            backoff = min(backoff * 2, 10.0)


async def _main(args: argparse.Namespace) -> int:
    settings = Settings()
    if not (args.url or settings.mqtt_url):
        raise SystemExit("crisis bridge mqtt: give --url mqtt://HOST:PORT or set CRISIS_MQTT_URL")
    url, path_topic = split_url(args.url or settings.mqtt_url or "")
    units = set(load_organisation(settings.organisation).units)
    producer = bridge_producer(settings, "mqtt")
    return await serve(
        producer,
        lambda stop: run_bridge(
            url=url,
            topic=args.topic or path_topic or DEFAULT_TOPIC,
            producer=producer,
            known_units=units,
            client_id=args.client_id,
            stop=stop,
        ),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="crisis bridge mqtt")
    parser.add_argument(
        "--url",
        default=None,
        help="mqtt://HOST:PORT[/filter] (mqtts:// for TLS; default CRISIS_MQTT_URL)",
    )
    parser.add_argument(
        "--topic", default=None, help=f"filter (default: the URL's path, else {DEFAULT_TOPIC})"
    )
    parser.add_argument("--client-id", default="crisis-bridge-mqtt", help="persistent session id")
    args = parser.parse_args(argv)
    setup_logging()
    return asyncio.run(_main(args))


if __name__ == "__main__":
    raise SystemExit(main())
