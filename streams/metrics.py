"""Prometheus metrics of the stream worker, on a registry of its own (no import-time globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: Buckets (seconds) fine enough below 100 ms to read a p99 target off them.
LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.02,
    0.03,
    0.04,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.5,
    0.75,
    1.0,
    2.0,
    5.0,
    10.0,
    30.0,
)


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.consumed = Counter(
            "crisis_events_consumed_total",
            "Events read from crisis.events, by type.",
            ["type"],
            registry=r,
        )
        self.duplicates = Counter(
            "crisis_events_duplicate_total",
            "Events whose (source, id) was already stored (redelivery or resend).",
            registry=r,
        )
        self.dead_lettered = Counter(
            "crisis_events_dead_lettered_total",
            "Events refused and dead-lettered, by type ('unknown' when unreadable).",
            ["type"],
            registry=r,
        )
        self.incidents_opened = Counter(
            "crisis_incidents_opened_total",
            "Incidents opened by correlation, by type.",
            ["type"],
            registry=r,
        )
        self.entries = Counter(
            "crisis_log_entries_written_total",
            "Log entries written by the worker, by kind.",
            ["kind"],
            registry=r,
        )
        self.published = Counter(
            "crisis_log_published_total", "Log entries published on crisis.log.", registry=r
        )
        self.lag = Gauge(
            "crisis_consumer_lag",
            "Records behind the high-water mark, by partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.batch_seconds = Histogram(
            "crisis_batch_seconds",
            "Time to process and commit one batch.",
            registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self.latency = Histogram(
            "crisis_produce_to_commit_seconds",
            "From the Kafka record timestamp to the commit of its crisis-log rows.",
            registry=r,
            buckets=LATENCY_BUCKETS,
        )
