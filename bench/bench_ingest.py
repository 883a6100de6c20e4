"""Ingest throughput: the durable producer to Kafka, to the outbox, the drain, and HTTP.

Figures on the embedded Tansu broker (memory storage) on this machine:
(a) ``EventProducer.accept`` in batches of 500, Kafka acks=all;
(b) the same with Kafka down: fsynced outbox appends; then the in-order drain once it is up;
(c) ``POST /api/v1/events`` in-process (httpx ASGI transport, token auth, validation, rate
limiter): batches of 100, and single events with 8 concurrent clients (latency p50/p99);
(d) the same with ``CRISIS_OUTBOX_UNTIL_LOGGED`` (what ``crisis up`` runs).
Writes ``var/bench/ingest.json``.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from crisis.kafka.broker import EmbeddedBroker, free_port
from crisis.kafka.producer import EventProducer
from crisis.sources.events import Envelope, validate_event
from tests.ingest_support import event, ingest_api, ingest_settings, partitions, wait_until

N_PRODUCER = 20_000
N_HTTP_BATCH = 10_000
N_HTTP_SINGLE = 2_000


def _envelopes(n: int) -> list[Envelope]:
    units = ["agder-froland", "ringerike", "oslo", "halden", "bergen", "trondheim"]
    return [
        validate_event(event(i, unit=units[i % len(units)], source=f"/bench/s{i % 50}"))
        for i in range(n)
    ]


async def _accept_all(producer: EventProducer, envs: list[Envelope], batch: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(envs), batch):
        await producer.accept(envs[i : i + batch])
    return time.perf_counter() - start


async def _run(tmp: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    envs = _envelopes(N_PRODUCER)
    port = free_port()
    broker = EmbeddedBroker(port=port, log_path=tmp / "tansu.log")

    # (b) Kafka down: the outbox takes everything, fsynced.
    producer = EventProducer(
        bootstrap=broker.bootstrap, outbox_path=tmp / "outbox.db", topic_partitions=partitions()
    )
    await producer.start()
    secs = await _accept_all(producer, envs, 500)
    results["outbox_append_events_per_s"] = round(N_PRODUCER / secs)
    broker.start()
    await wait_until(lambda: producer.connected, within=60, what="reconnect")
    start = time.perf_counter()  # the drain alone, not the reconnect back-off
    await wait_until(lambda: producer.outbox_depth() == 0, within=300, what="drain")
    results["outbox_drain_events_per_s"] = round(N_PRODUCER / (time.perf_counter() - start))

    # (a) Kafka up: acks=all per batch.
    secs = await _accept_all(producer, _envelopes(N_PRODUCER), 500)
    results["kafka_accept_events_per_s"] = round(N_PRODUCER / secs)
    await producer.stop()

    # (c) HTTP, Kafka's ack as durability; (d) the same with the outbox waiting for the log
    # (what `crisis up` runs): fsynced outbox before the 202, no worker confirms meanwhile.
    for prefix, until_logged in (("http", False), ("http_until_logged", True)):
        results.update(await _http(tmp / prefix, broker.bootstrap, prefix, until_logged))
    broker.stop()
    return results


async def _http(tmp: Path, bootstrap: str, prefix: str, until_logged: bool) -> dict[str, Any]:
    results: dict[str, Any] = {}
    settings = ingest_settings(
        tmp,
        bootstrap,
        ingest_rate_per_source=1e9,
        ingest_burst_per_source=10_000,
        outbox_until_logged=until_logged,
    )
    await asyncio.to_thread(tmp.mkdir)
    async with ingest_api(settings) as api:
        headers = await api.user("bench", "kdi")
        raws = [event(i, source=f"/bench/{prefix}/h{i % 50}") for i in range(N_HTTP_BATCH)]
        start = time.perf_counter()
        for i in range(0, len(raws), 100):
            r = await api.client.post("/api/v1/events", json=raws[i : i + 100], headers=headers)
            assert r.status_code == 202, r.text
        results[f"{prefix}_batch100_events_per_s"] = round(
            N_HTTP_BATCH / (time.perf_counter() - start)
        )

        singles = [event(i, source=f"/bench/{prefix}/x{i % 50}") for i in range(N_HTTP_SINGLE)]
        latencies: list[float] = []

        async def client(part: list[dict[str, Any]]) -> None:
            for ev in part:
                t0 = time.perf_counter()
                r = await api.client.post("/api/v1/events", json=ev, headers=headers)
                latencies.append(time.perf_counter() - t0)
                assert r.status_code == 202, r.text

        start = time.perf_counter()
        await asyncio.gather(*(client(singles[k::8]) for k in range(8)))
        results[f"{prefix}_single_c8_events_per_s"] = round(
            N_HTTP_SINGLE / (time.perf_counter() - start)
        )
        q = statistics.quantiles(latencies, n=100)
        results[f"{prefix}_single_c8_latency_ms_p50"] = round(q[49] * 1000, 1)
        results[f"{prefix}_single_c8_latency_ms_p99"] = round(q[98] * 1000, 1)
    return results


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="crisis-bench-ingest-") as tmp:
        results = asyncio.run(_run(Path(tmp)))
    width = max(len(k) for k in results)
    for key, value in results.items():
        print(f"  {key:<{width}}  {value}")
    out = Path("var/bench")
    out.mkdir(parents=True, exist_ok=True)
    (out / "ingest.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"  (json: {out / 'ingest.json'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
