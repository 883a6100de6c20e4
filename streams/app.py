"""Faust application factory, tuned for the embedded Tansu broker.

Nothing is built at import time: importing this module must not create an
event loop, an App, or touch the network, so tests and the CLI can decide
the broker address and data directory first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

from crisis.kafka import topics

__all__ = [
    "DLQ_TOPIC",
    "EVENTS_TOPIC",
    "LOG_TOPIC",
    "NOTIFICATIONS_TOPIC",
    "create_faust_app",
    "faust_settings",
    "topic_names",
]

EVENTS_TOPIC = topics.EVENTS
DLQ_TOPIC = topics.EVENTS_DLQ
LOG_TOPIC = topics.LOG
NOTIFICATIONS_TOPIC = topics.NOTIFICATIONS


def topic_names() -> tuple[str, str, str, str]:
    """The application's topics: events, dead-letter queue, log, notifications."""
    return (EVENTS_TOPIC, DLQ_TOPIC, LOG_TOPIC, NOTIFICATIONS_TOPIC)


def faust_settings(
    *,
    bootstrap: str,
    data_dir: Path,
    web_port: int | None = None,
) -> dict[str, Any]:
    """Keyword settings passed to :class:`faust.App`; exposed for inspection in tests."""
    settings: dict[str, Any] = {
        "broker": f"kafka://{bootstrap}",
        "datadir": str(data_dir),
        # Table-less app: no RocksDB, and no changelog topics to create/restore.
        "store": "memory://",
        # Short group timings. Tansu holds a JoinGroup open for the rebalance
        # timeout, so with Faust's 60 s defaults a fresh worker produced its
        # first output after ~32 s; with these the join takes ~3 s and the
        # first output arrives ~4.5-5 s after the worker process starts.
        "broker_session_timeout": 6.0,
        "broker_rebalance_timeout": 3.0,
        "broker_heartbeat_interval": 1.0,
        # Must be >= session timeout (Faust/aiokafka requirement), but small
        # enough that a dead broker surfaces as an error quickly.
        "broker_request_timeout": 15.0,
        "broker_commit_interval": 1.0,
        # At-least-once: Tansu's transactional APIs are not relied upon.
        "processing_guarantee": "at_least_once",
        "producer_acks": -1,
        "consumer_auto_offset_reset": "earliest",
        # Faust may still declare its own internal topics (the assignor leader
        # topic); application topics are created up front by ensure_topics().
        "topic_allow_declare": True,
        "topic_replication_factor": 1,
        "topic_partitions": 1,
        "web_enabled": web_port is not None,
    }
    if web_port is not None:
        settings["web_port"] = web_port
        settings["web_bind"] = "127.0.0.1"
        settings["web_host"] = "127.0.0.1"
    return settings


#: How long a fetch may wait at the broker for new records. Faust hard-codes 1,500 ms, and
#: on Tansu records then reached the worker in bursts about that far apart. The idle cost of
#: 20 ms: about 50 small fetch round trips a second per consumer.
FETCH_MAX_WAIT_MS = 20


class PromptConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's aiokafka consumer thread with a short broker-side fetch wait."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read when the consumer starts
        return consumer


class PromptConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> PromptConsumerThread:
        return PromptConsumerThread(self, loop=self.loop, beacon=self.beacon)


class PromptTransport(faust_aiokafka.Transport):
    Consumer = PromptConsumer


class CrisisFaustApp(faust.App):
    """A Faust app whose consumers fetch promptly (see ``FETCH_MAX_WAIT_MS``), with tasks that
    start with the app (``early_task``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._early_tasks: list[Callable[[], Awaitable[None]]] = []

    def early_task(self, fun: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        """Like ``app.task``, but started when the app starts. Faust starts its tasks only once
        its own consumer group has joined (~3 s on Tansu); the batch readers
        (``streams.batches``) join their own groups and need not wait for that one."""
        self._early_tasks.append(fun)
        return fun

    async def on_start(self) -> None:
        await super().on_start()
        for fun in self._early_tasks:
            self.add_future(fun())

    def _new_transport(self) -> Any:
        return PromptTransport(self.conf.broker_consumer, self)


def create_faust_app(
    *,
    bootstrap: str,
    app_id: str = "crisis-worker",
    data_dir: Path,
    web_port: int | None = None,
) -> CrisisFaustApp:
    """Build a fresh Faust app bound to ``bootstrap`` (``host:port``).

    The Faust web server is off unless ``web_port`` is given, so several
    workers (and the FastAPI web app) can share a host without port clashes.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    app = CrisisFaustApp(
        app_id,
        autodiscover=False,
        **faust_settings(bootstrap=bootstrap, data_dir=data_dir, web_port=web_port),
    )
    # `faust worker` has `--with-web/--without-web` defaulting to *with*, and it
    # overwrites conf.web_enabled, so web_enabled=False alone still binds :6066.
    # The boot strategy's flag takes precedence over conf, so pin it here.
    app.boot_strategy.enable_web = web_port is not None
    return app
