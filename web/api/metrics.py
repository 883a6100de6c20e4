"""Prometheus metrics of the web process, on a registry of its own (no import-time globals)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector


class Unpublishable(Protocol):
    """What the ingest producer counts of the records the broker could never take."""

    origin: str
    dead_lettered: int
    dropped: int


class _UnpublishableCollector(Collector):
    """Reads the producer's own counts at scrape time, so the producer keeps no globals."""

    def __init__(self) -> None:
        self.producer: Unpublishable | None = None

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "crisis_producer_unpublishable",
            "Records the broker could not take: dead-lettered in reduced form, or dropped.",
            labels=["origin", "outcome"],
        )
        if self.producer is not None:
            origin = self.producer.origin
            family.add_metric([origin, "dead_lettered"], self.producer.dead_lettered)
            family.add_metric([origin, "dropped"], self.producer.dropped)
        yield family


class WebMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.entries = Counter(
            "crisis_log_entries_written_total",
            "Log entries written through the API, by kind.",
            ["kind"],
            registry=self.registry,
        )
        self.incidents_opened = Counter(
            "crisis_incidents_opened_total",
            "Incidents opened through the API.",
            registry=self.registry,
        )
        self.refusals = Counter(
            "crisis_rule_refusals_total",
            "Writes refused by a principle or rule, by field.",
            ["field"],
            registry=self.registry,
        )
        # --- ingest (web/api/ingest.py) ---
        self.events_accepted = Counter(
            "crisis_events_accepted_total",
            "Events accepted by the HTTP ingest (durable in Kafka or the outbox), by type.",
            ["type"],
            registry=self.registry,
        )
        self.events_rejected = Counter(
            "crisis_events_rejected_total",
            "Events refused by the HTTP ingest, by type ('unknown' if unreadable) and reason.",
            ["type", "reason"],
            registry=self.registry,
        )
        self.outbox_depth = Gauge(
            "crisis_outbox_depth",
            "Records waiting in the local outbox for Kafka to come back.",
            registry=self.registry,
        )
        self.unpublishable = _UnpublishableCollector()
        self.registry.register(self.unpublishable)
