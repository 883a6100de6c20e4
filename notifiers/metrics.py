"""Prometheus metrics of the dispatcher, on a registry of its own (docs/metrics.md).

Labels are the recipient group kind, the channel and the outcome: never a recipient, an
address or an exercise's name, so exercise traffic shows in them no more than real traffic.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from notifiers.models import MessageStatus

#: The outbox states still waiting for the dispatcher (the queue), as the depth gauge shows.
QUEUED_STATES = (
    MessageStatus.PENDING.value,
    MessageStatus.HELD.value,
    MessageStatus.AWAITING_APPROVAL.value,
)

#: Seconds from an outbox row's creation to its delivery: retries back off for minutes.
DELIVERY_BUCKETS = (
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
)


class DispatcherMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.queue = Gauge(
            "crisis_notify_queue_messages",
            "Outbox messages waiting, by state (pending, held, awaiting_approval); this"
            " dispatcher's shard.",
            ["state"],
            registry=r,
        )
        self.messages = Counter(
            "crisis_notify_messages_total",
            "Delivery outcomes by group kind, channel and outcome: sent, retry (an attempt"
            " failed; tried again), failed (every contact), held, awaiting_approval, blocked.",
            ["group", "channel", "outcome"],
            registry=r,
        )
        self.delivery_seconds = Histogram(
            "crisis_notify_delivery_seconds",
            "From the update's request (or its approval, when it needed one) to the delivery"
            " of each of its messages, by group kind; escalations are not observed.",
            ["group"],
            registry=r,
            buckets=DELIVERY_BUCKETS,
        )
        self.escalations = Counter(
            "crisis_notify_escalations_total",
            "Alarms not acknowledged in time, by group kind.",
            ["group"],
            registry=r,
        )
        self.pass_errors = Counter(
            "crisis_notify_pass_errors_total",
            "Dispatcher passes that failed with an error (logged; the next pass retries).",
            registry=r,
        )
        for state in QUEUED_STATES:
            self.queue.labels(state)
