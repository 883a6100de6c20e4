"""Prometheus metrics of the web process, on a registry of its own (no import-time globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


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
