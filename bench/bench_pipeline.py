"""Pipeline benchmark: the Faust ceiling vs. the full pipeline, and latency at 1,000 events/s.

One run, one embedded broker:
(a) a bare Faust agent (``take_events`` batches) that only JSON-decodes the events — the
    ceiling of a Faust agent on this machine;
(a') the same with the worker's own reader, ``streams.batches.BatchConsumer`` (aiokafka
    ``getmany``, see that module for why the ingest does not use a Faust agent) — the ceiling
    of the path the worker takes;
(b) the real worker, deployed as ``crisis up`` deploys it (``python -m streams worker --role
    ingest`` and ``--role reactions``, SQLite), from the same backlog to committed raw events,
    incidents and chained log entries (measured by polling the database), the playbook engine
    reacting to the log meanwhile;
then, with the worker caught up, 1,000 events/s offered for ``LATENCY_SECONDS``:
produce→committed from the worker's histogram (Kafka record timestamp → commit) and
produce→``crisis.log`` measured exactly by a consumer of the change feed.

``python -m bench pipeline`` (or ``make bench``); writes ``bench-results-pipeline.json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from crisis.domain.organisation import load_organisation
from crisis.kafka import topics
from crisis.kafka.broker import EmbeddedBroker, ensure_topics, free_port
from crisis.log.models import LogEntry, RawEvent
from crisis.store.db import make_engine, migrate
from streams.reactions import REACTIONS_GROUP
from tests.worker_harness import REPO_ROOT, count, produce, spawn_worker, stop, worker_env

N_BACKLOG = int(os.environ.get("BENCH_EVENTS", "60000"))
RATE = 1000
LATENCY_SECONDS = int(os.environ.get("BENCH_LATENCY_SECONDS", "15"))
N_SOURCES = 300
RESULT_FILE = Path("bench-results-pipeline.json")
#: The id of a paced event inside a crisis.log entry (its ``data.id``).
PACED_ID = re.compile(rb'"id": "(bench-2-\d+)"')

DECODE_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from streams.app import create_faust_app

    app = create_faust_app(bootstrap=sys.argv[1], app_id="bench-decode", data_dir=Path(sys.argv[2]))
    events = app.topic("crisis.events", value_type=bytes, value_serializer="raw")
    target = int(sys.argv[3])
    out = Path(sys.argv[4])
    state = {"n": 0, "first": None, "first_n": 0}

    @app.agent(events, concurrency=1)
    async def decode(stream):
        async for batch in stream.take_events(1000, within=0.02):
            for event in batch:
                json.loads(event.value)
            if state["first"] is None:
                state["first"], state["first_n"] = time.time(), len(batch)
            state["n"] += len(batch)
            if state["n"] >= target:
                out.write_text(json.dumps({**state, "last": time.time()}))

    if __name__ == "__main__":
        sys.argv = [sys.argv[0], "worker", "-l", "warn"]
        app.main()
    """
)


BATCH_DECODE_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from pathlib import Path
    from streams.batches import BatchConsumer

    target = int(sys.argv[3])
    out = Path(sys.argv[4])
    state = {"n": 0, "first": None, "first_n": 0}

    async def handle(records):
        for r in records:
            json.loads(r.value)
        if state["first"] is None:
            state["first"], state["first_n"] = time.time(), len(records)
        state["n"] += len(records)
        if state["n"] >= target:
            out.write_text(json.dumps({**state, "last": time.time()}))

    async def main():
        consumer = BatchConsumer(
            bootstrap=sys.argv[1], topic="crisis.events", group_id="bench-decode-batches",
            handle=handle,
        )
        await consumer.run()

    if __name__ == "__main__":
        asyncio.run(main())
    """
)


def _events(n: int, seed: int, start: int = 0) -> list[tuple[str, bytes, str]]:
    """(key, value, event id): alarms from N_SOURCES sources over the demo units."""
    rng = random.Random(seed)
    units = sorted(load_organisation().units)
    kinds = [
        ("sensor.personal_alarm", "area", ["A-blokk", "B-blokk", "C-blokk"]),
        ("sensor.door_forced", "door", ["D1", "D2"]),
        ("sensor.fire_alarm", "zone", ["kjøkken", "verksted"]),
        ("sensor.ek_tamper", "tag", ["EK-1", "EK-2"]),
        ("sensor.breath_absent", "cell", ["A2-114", "B1-7"]),
    ]
    sources = []
    for s in range(N_SOURCES):
        type_, field, values = kinds[s % len(kinds)]
        sources.append((units[s % len(units)], s, type_, field, rng.choice(values)))
    base = datetime.now(UTC) - timedelta(hours=1)
    out = []
    for i in range(start, start + n):
        unit, s, type_, field, value = rng.choice(sources)
        eid = f"bench-{seed}-{i}"
        env = {
            "specversion": "1.0",
            "id": eid,
            "source": f"/units/{unit}/sensors/s{s}",
            "type": f"no.kriminalomsorgen.{type_}",
            "time": (base + timedelta(seconds=i * 0.05)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "unit": unit,
            "data": {field: value},
        }
        out.append((unit, json.dumps(env).encode(), eid))
    return out


def _histogram(text: str, name: str) -> list[tuple[float, float]]:
    """Cumulative (upper bound, count) pairs of a Prometheus histogram."""
    out = []
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket{{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out.append((float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
    return out


def _quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """Linear interpolation inside the bucket (what Prometheus' histogram_quantile does)."""
    total = buckets[-1][1]
    if total <= 0:
        return float("nan")
    rank = q * total
    prev_le, prev_n = 0.0, 0.0
    for le, n in buckets:
        if n >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * ((rank - prev_n) / max(n - prev_n, 1e-9))
        prev_le, prev_n = le, n
    return prev_le


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux ``/proc``; 0 if it is gone)."""
    if not Path(f"/proc/{pid}/stat").exists():
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return str(r.read().decode())


def _spawn_decoder(script: Path, bootstrap: str, tmp: Path, out: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    with open(out.with_suffix(".log"), "wb") as log:
        return subprocess.Popen(
            [
                sys.executable,
                str(script),
                bootstrap,
                str(tmp / "faust-a"),
                str(N_BACKLOG),
                str(out),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp,
        )


async def _ceiling(
    broker: EmbeddedBroker, tmp: Path, source: str = DECODE_SCRIPT, name: str = "decode"
) -> dict[str, float]:
    script = tmp / f"{name}.py"
    script.write_text(source)
    out = tmp / f"{name}.json"
    proc = _spawn_decoder(script, broker.bootstrap, tmp, out)
    try:
        deadline = time.monotonic() + 600
        while not out.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "decode agent failed: " + out.with_suffix(".log").read_text()[-3000:]
                )
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.05)
        result = json.loads(out.read_text())
    finally:
        stop(proc)
    seconds = result["last"] - result["first"]
    return {
        "events": result["n"],
        "seconds": seconds,
        "rate": (result["n"] - result["first_n"]) / seconds,
    }


async def _pipeline(broker: EmbeddedBroker, tmp: Path) -> dict[str, Any]:
    url = f"sqlite+aiosqlite:///{tmp / 'crisis.db'}"
    engine = make_engine(url)
    await migrate(engine)
    port = free_port()
    env = worker_env(broker.bootstrap, tmp / "var", url, CRISIS_WORKER_METRICS_PORT=str(port))
    proc = spawn_worker(env, tmp / "worker.log", role="ingest")
    # BENCH_WITHOUT_REACTIONS=1: the ingest process alone (to see what the reactions cost).
    procs = [proc]
    if not os.environ.get("BENCH_WITHOUT_REACTIONS"):
        procs.append(spawn_worker(env, tmp / "reactions.log", role="reactions"))
    try:
        deadline = time.monotonic() + 900
        first_t, first_n = None, 0
        n = 0
        while n < N_BACKLOG:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("worker failed: " + (tmp / "worker.log").read_text()[-3000:])
            n = await count(engine, RawEvent)
            if n and first_t is None:
                first_t, first_n = time.monotonic(), n
            await asyncio.sleep(0.02)
        assert first_t is not None
        end = time.monotonic()
        sustained = {"events": n, "seconds": end - first_t, "rate": (n - first_n) / (end - first_t)}

        # --- latency at an offered 1,000 events/s, the worker caught up -----------------
        # Caught up = the reactions (playbook setups, notification plans) have finished too:
        # the crisis log has stopped growing.
        settle = await _settled(engine, broker.bootstrap if len(procs) > 1 else None, *procs)
        before = _histogram(
            await asyncio.to_thread(_scrape, port), "crisis_produce_to_commit_seconds"
        )
        # Who uses the two cores meanwhile: the worker processes, the broker, and this
        # benchmark's own producer and feed consumer.
        pids = [p.pid for p in procs]
        others = [broker._proc.pid if broker._proc else 0, os.getpid()]
        cpu_before, paced_start = [_cpu_seconds(p) for p in pids + others], time.monotonic()
        paced = _events(RATE * LATENCY_SECONDS, seed=2, start=N_BACKLOG)
        sent: dict[str, float] = {}
        arrived: dict[str, float] = {}
        consumer = AIOKafkaConsumer(
            topics.LOG,
            bootstrap_servers=broker.bootstrap,
            group_id=None,
            auto_offset_reset="latest",
            fetch_max_wait_ms=5,
        )
        await consumer.start()
        await consumer.seek_to_end()

        async def listen() -> None:
            while len(arrived) < len(paced):
                batches = await consumer.getmany(timeout_ms=100)
                now = time.time()
                for records in batches.values():
                    for r in records:
                        # A pattern, not json.loads: the listener shares the two cores with
                        # what it measures. Only the benchmark's own event ids match.
                        found = PACED_ID.search(r.value)
                        eid = found.group(1).decode() if found else None
                        if eid in sent and eid not in arrived:
                            arrived[eid] = now

        ids = [eid for _, _, eid in paced]
        listener = asyncio.create_task(listen())
        await produce(
            broker.bootstrap,
            topics.EVENTS,
            [(k, v) for k, v, _ in paced],
            pace=RATE,
            on_sent=lambda i, t: sent.__setitem__(ids[i], t),
        )
        try:
            await asyncio.wait_for(listener, 60)
        except TimeoutError:
            listener.cancel()
        await consumer.stop()
        cpu = [
            (_cpu_seconds(p) - b) / (time.monotonic() - paced_start)
            for p, b in zip(pids + others, cpu_before, strict=True)
        ]
        await asyncio.sleep(1)
        after = _histogram(
            await asyncio.to_thread(_scrape, port), "crisis_produce_to_commit_seconds"
        )
        diff = [(le, a - b) for (le, a), (_, b) in zip(after, before, strict=True)]
        feed = [arrived[e] - sent[e] for e in arrived]
        latency = {
            "offered_rate": RATE,
            "seconds": LATENCY_SECONDS,
            "committed_events": diff[-1][1],
            "commit_p50_ms": _quantile(diff, 0.5) * 1000,
            "commit_p99_ms": _quantile(diff, 0.99) * 1000,
            "feed_events": len(feed),
            "feed_p50_ms": _pct(feed, 0.5) * 1000,
            "feed_p99_ms": _pct(feed, 0.99) * 1000,
            # Cores busy meanwhile (CPU seconds per second), per worker process.
            "ingest_cpu": cpu[0],
            "reactions_cpu": cpu[1] if len(procs) > 1 else None,
            "broker_cpu": cpu[-2],
            "bench_client_cpu": cpu[-1],
        }
        return {"sustained": sustained, "settle_seconds": settle, "latency": latency}
    finally:
        for p in procs:
            stop(p)
        await engine.dispose()


async def _settled(engine: Any, reactions_at: str | None, *procs: subprocess.Popen[bytes]) -> float:
    """Seconds until the crisis log has held still for 2 s and (if ``reactions_at``, their
    broker) the reactions have read all of ``crisis.log`` (at most 180 s): a reactions process
    still working through the backlog's entries would share the cores with the paced phase."""
    start = time.monotonic()
    last, still_since = -1, time.monotonic()
    while time.monotonic() - start < 180:
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a worker process died")
        n = await count(engine, LogEntry)
        if n != last:
            last, still_since = n, time.monotonic()
        elif time.monotonic() - still_since >= 2 and (
            reactions_at is None or await _reactions_read_all(reactions_at)
        ):
            break
        await asyncio.sleep(0.25)
    return time.monotonic() - start


async def _reactions_read_all(bootstrap: str) -> bool:
    """Whether the reactions' group has committed the end of ``crisis.log`` (one partition
    here)."""
    tp = TopicPartition(topics.LOG, 0)
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=REACTIONS_GROUP)
    await probe.start()
    try:
        end = (await probe.end_offsets([tp]))[tp]
        return (await probe.committed(tp) or 0) >= end
    finally:
        await probe.stop()


async def _run() -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="bench-pipeline-") as d,
        EmbeddedBroker(log_path=Path(d) / "tansu.log") as broker,
    ):
        tmp = Path(d)
        await ensure_topics(
            broker.bootstrap, {topics.EVENTS: 4, topics.EVENTS_DLQ: 1, topics.LOG: 1}
        )
        backlog = _events(N_BACKLOG, seed=1)
        t = time.monotonic()
        await produce(broker.bootstrap, topics.EVENTS, [(k, v) for k, v, _ in backlog])
        produce_s = time.monotonic() - t
        ceiling = await _ceiling(broker, tmp)
        batches = await _ceiling(broker, tmp, BATCH_DECODE_SCRIPT, "decode-batches")
        full = await _pipeline(broker, tmp)
    return {
        "produce_backlog_seconds": produce_s,
        "ceiling": ceiling,
        "ceiling_batches": batches,
        **full,
    }


def main() -> int:
    result = asyncio.run(_run())
    a, b, lat = result["ceiling"], result["sustained"], result["latency"]
    a2 = result["ceiling_batches"]
    ratio = b["rate"] / a["rate"]
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    targets = {
        "pipeline_rate >= 10000": b["rate"] >= 10_000,
        "ratio >= 0.5": ratio >= 0.5,
        "commit_p99_ms <= 100": lat["commit_p99_ms"] <= 100,
    }
    rows = [
        (
            "(a) bare Faust agent, decode only",
            f"{a['rate']:,.0f} events/s",
            f"{a['events']} events",
        ),
        (
            "(a') batch reader (BatchConsumer), decode",
            f"{a2['rate']:,.0f} events/s",
            f"{a2['events']} events",
        ),
        ("(b) full pipeline → SQLite", f"{b['rate']:,.0f} events/s", f"{b['events']} events"),
        ("b/a", f"{ratio:.2f}", ""),
        ("b/a'", f"{b['rate'] / a2['rate']:.2f}", ""),
        (
            f"produce→committed @ {RATE}/s",
            f"p50 {lat['commit_p50_ms']:.1f} ms",
            f"p99 {lat['commit_p99_ms']:.1f} ms",
        ),
        (
            f"produce→crisis.log @ {RATE}/s",
            f"p50 {lat['feed_p50_ms']:.1f} ms",
            f"p99 {lat['feed_p99_ms']:.1f} ms",
        ),
        (
            f"cores busy @ {RATE}/s (CPU s/s)",
            f"ingest {lat['ingest_cpu']:.2f}",
            "reactions " + ("-" if lat["reactions_cpu"] is None else f"{lat['reactions_cpu']:.2f}"),
        ),
        ("", f"broker {lat['broker_cpu']:.2f}", f"bench client {lat['bench_client_cpu']:.2f}"),
    ]
    print(f"{'measure':40} {'value':>22} {'':>18}")
    for name, value, extra in rows:
        print(f"{name:40} {value:>22} {extra:>18}")
    for target, ok in targets.items():
        print(f"target {target}: {'met' if ok else 'NOT met'}")
    payload = {
        "benchmark": "pipeline",
        "when": datetime.now(UTC).isoformat(),
        "machine": {
            "host": platform.node(),
            "cpu": cpu,
            "cores": os.cpu_count(),
            "python": platform.python_version(),
        },
        "command": "python -m bench pipeline",
        "ratio": ratio,
        "ratio_to_batch_reader": b["rate"] / a2["rate"],
        "targets": targets,
        **result,
    }
    RESULT_FILE.write_text(json.dumps(payload, indent=2))
    print(f"written {RESULT_FILE.resolve()}")
    return 0
