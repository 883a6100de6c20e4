"""Deliver one update to 10,000 recipients through ``json://`` to a local HTTP sink.

The sink is a minimal HTTP/1.1 keep-alive server in its own process (it would otherwise share
a GIL, and an aiohttp server would be the bottleneck); the database is SQLite in a temporary
directory. Three measurements, each from the start of ``request_update`` (rendering, 10,000
outbox rows and 10,000 ``queued`` log entries) until the database records every message as
sent (10,000 attempts, 10,000 ``sent`` log entries), with the sink's own count and
``crisis.log.verify_log`` over the whole chain as checks:

1. **as deployed** (the headline): one real ``python -m notifiers`` process, started as
   ``crisis up`` starts it, with production delivery defaults (poll interval, batch size), so
   the time includes the dispatcher noticing the new rows;
2. **in-process**: the same dispatcher code driven by ``run_once`` in this process, for the
   split between ``request_update`` and dispatch;
3. two dispatcher processes (``--shard 0/2`` and ``1/2``), for comparison.

Building the apprise targets happens once at dispatcher start-up and is reported separately.
Also measured for comparison: stock apprise ``json://`` (``requests`` in apprise's thread
pool) for 1,000 targets.

``python -m bench notify`` (or ``make bench``); ``N`` and ``CONCURRENCY`` env to vary.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any


def _sink(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "bench.notify_sink", str(port)])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            _stats(port)
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the sink did not start")


def _stats(port: int) -> int:
    url = f"http://127.0.0.1:{port}/_stats"
    with urllib.request.urlopen(url, timeout=5) as r:
        return int(json.loads(r.read())["count"])


async def _run(n: int, concurrency: int, port: int, data: Path) -> dict[str, Any]:
    from sqlmodel import func, select

    from crisis.clock import utcnow
    from crisis.log.append import open_incident
    from crisis.log.models import IncidentCreate
    from crisis.log.verify import verify_log
    from crisis.store.db import make_engine, make_sessionmaker, migrate
    from notifiers import service
    from notifiers.config import Contact, Delivery, Group, NotifyConfig, Person
    from notifiers.dispatcher import Dispatcher, freeze_startup_heap
    from notifiers.models import MessageStatus, OutboxMessage

    people = tuple(
        Person(
            id=f"r{i:05d}",
            name=f"Mottaker {i}",
            contacts=(Contact(channel="webhook", url=f"json://127.0.0.1:{port}/r/{i}"),),
        )
        for i in range(n)
    )
    config = NotifyConfig(
        delivery=Delivery(concurrency=concurrency),
        people=people,
        groups=(Group(id="alle", kind="staff", members=tuple(p.id for p in people)),),
    )
    engine = make_engine(f"sqlite+aiosqlite:///{data / 'bench.db'}")
    await migrate(engine)
    sessions = make_sessionmaker(engine)
    async with sessions() as session:
        incident, _ = await open_incident(
            session,
            incident=IncidentCreate(type="fire", title="Brann", unit="agder-froland", severity=4),
            actor="bench",
        )
        await session.commit()
    dispatcher = Dispatcher(sessions, config)  # the default batch size, as deployed
    t = time.perf_counter()
    dispatcher.warm()
    warm = time.perf_counter() - t
    freeze_startup_heap()  # as ``python -m notifiers`` does after warm()
    before = _stats(port)

    t0 = time.perf_counter()
    async with sessions() as session:
        await service.request_update(
            session,
            config=config,
            incident_id=incident.id,
            facts={
                "title": "Brann i avdeling A",
                "known": "Røykutvikling i avdeling A. Ingen personskader meldt.",
                "actions": "Avdelingen er evakuert, brannvesenet er på stedet.",
            },
            groups=["staff"],
            template="update",
            next_update_at=utcnow() + timedelta(minutes=30),
            author="bench",
        )
        await session.commit()
    t1 = time.perf_counter()
    while await dispatcher.run_once():
        pass
    t2 = time.perf_counter()
    async with sessions() as session:
        sent = (
            await session.exec(
                select(func.count()).where(OutboxMessage.status == MessageStatus.SENT.value)
            )
        ).one()
        report = await verify_log(session, snapshot=False)
    await dispatcher.aclose()
    await engine.dispose()
    return {
        "log_entries_verified": report.entries if report.ok else f"BROKEN: {report.breaks}",
        "recipients": n,
        "concurrency": concurrency,
        "seconds_total": round(t2 - t0, 3),
        "seconds_request_update": round(t1 - t0, 3),
        "seconds_dispatch": round(t2 - t1, 3),
        "seconds_build_targets_once": round(warm, 3),
        "messages_per_second": round(n / (t2 - t0), 1),
        "sent_recorded": int(sent),
        "sink_received": _stats(port) - before,
    }


def _dispatchers(env: dict[str, str], shards: int) -> list[subprocess.Popen[str]]:
    """Start the dispatcher processes and wait until each has built its targets."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "notifiers"]
            + (["--shard", f"{k}/{shards}"] if shards > 1 else []),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for k in range(shards)
    ]
    for proc in procs:
        assert proc.stdout is not None
        line = ""
        while "running" not in line:
            line = proc.stdout.readline()
            if not line:
                for p in procs:
                    p.kill()
                raise RuntimeError("a dispatcher process exited")
    return procs


async def _run_processes(
    n: int, concurrency: int, port: int, data: Path, shards: int
) -> dict[str, Any]:
    """The same update, delivered by ``shards`` real ``python -m notifiers`` processes.

    Each process is started exactly as ``crisis up`` starts it (``--shard K/N`` when more
    than one), with the delivery defaults (poll interval, batch size) of production: the
    time runs from the start of ``request_update`` until the database records every message
    as sent, so it includes the dispatcher noticing the new rows (up to one poll interval).
    """
    from sqlmodel import func, select

    from crisis.clock import utcnow
    from crisis.log.append import open_incident
    from crisis.log.models import IncidentCreate
    from crisis.log.verify import verify_log
    from crisis.store.db import make_engine, make_sessionmaker, migrate
    from notifiers import service
    from notifiers.config import load_notify_config
    from notifiers.models import MessageStatus, OutboxMessage

    config_path = data / "notify.yaml"
    lines = ["version: 1", "delivery:", f"  concurrency: {concurrency}", "people:"]
    for i in range(n):
        lines.append(
            f"  - {{id: r{i:05d}, name: m{i}, contacts: "
            f"[{{channel: webhook, url: 'json://127.0.0.1:{port}/r/{i}'}}]}}"
        )
    lines += ["groups:", "  - id: alle", "    kind: staff", "    members:"]
    lines += [f"      - r{i:05d}" for i in range(n)]
    config_path.write_text("\n".join(lines) + "\n")
    url = f"sqlite+aiosqlite:///{data / 'sharded.db'}"
    engine = make_engine(url)
    await migrate(engine)
    sessions = make_sessionmaker(engine)
    async with sessions() as session:
        incident, _ = await open_incident(
            session,
            incident=IncidentCreate(type="fire", title="Brann", unit="agder-froland", severity=4),
            actor="bench",
        )
        await session.commit()
    config = load_notify_config(config_path)
    env = dict(
        os.environ,
        CRISIS_DATA_DIR=str(data),
        CRISIS_DATABASE_URL=f"sqlite:///{data / 'sharded.db'}",
        CRISIS_NOTIFY_CONFIG=str(config_path),
    )
    procs = _dispatchers(env, shards)
    try:
        before = _stats(port)
        t0 = time.perf_counter()
        async with sessions() as session:
            await service.request_update(
                session,
                config=config,
                incident_id=incident.id,
                facts={
                    "title": "Brann i avdeling A",
                    "known": "Røykutvikling i avdeling A. Ingen personskader meldt.",
                    "actions": "Avdelingen er evakuert, brannvesenet er på stedet.",
                },
                groups=["staff"],
                template="update",
                next_update_at=utcnow() + timedelta(minutes=30),
                author="bench",
            )
            await session.commit()
        queued = time.perf_counter() - t0
        sent = 0
        deadline = time.monotonic() + 300
        while sent < n and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            async with sessions() as session:
                sent = (
                    await session.exec(
                        select(func.count()).where(OutboxMessage.status == MessageStatus.SENT.value)
                    )
                ).one()
        elapsed = time.perf_counter() - t0
        async with sessions() as session:
            report = await verify_log(session)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)
            if proc.stdout is not None:
                proc.stdout.close()
        await engine.dispose()
    return {
        "log_entries_verified": report.entries if report.ok else f"BROKEN: {report.breaks}",
        "processes": shards,
        "seconds_total": round(elapsed, 3),
        "seconds_request_update": round(queued, 3),
        "seconds_until_all_sent_after_commit": round(elapsed - queued, 3),
        "poll_seconds": config.delivery.poll_seconds,
        "sent_recorded": int(sent),
        "sink_received": _stats(port) - before,
    }


async def _stock(n: int, port: int) -> float:
    """Stock apprise json:// (blocking requests in its thread pool) for comparison."""
    import apprise
    from apprise.plugins.custom_json import NotifyJSON

    ap = apprise.Apprise()
    for i in range(n):
        ap.add(NotifyJSON(host="127.0.0.1", port=port, fullpath=f"/stock/{i}"))
    t = time.perf_counter()
    result = await ap.async_notify(body="hei", title="stock")
    elapsed = time.perf_counter() - t
    assert result.success_count == n, result.status
    return elapsed


def main() -> int:
    from crisis.kafka.broker import free_port

    n = int(os.environ.get("N", "10000"))
    concurrency = int(os.environ.get("CONCURRENCY", "128"))
    port = free_port()
    sink = _sink(port)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            deployed = asyncio.run(_run_processes(n, concurrency, port, Path(tmp), 1))
        with tempfile.TemporaryDirectory() as tmp:
            result = asyncio.run(_run(n, concurrency, port, Path(tmp)))
        with tempfile.TemporaryDirectory() as tmp:
            two = asyncio.run(_run_processes(n, concurrency, port, Path(tmp), 2))
        result["stock_apprise_1000_seconds"] = round(asyncio.run(_stock(1000, port)), 3)
    finally:
        sink.terminate()
        sink.wait(10)
    result = {"as_deployed": deployed, "in_process": result, "two_dispatcher_processes": two}
    result["machine"] = f"{platform.node()} · {os.cpu_count()} cores · python "
    result["machine"] += platform.python_version()
    result["load_average_1min_after"] = round(os.getloadavg()[0], 2)  # the machine is shared
    result["target_seconds"] = 5.0
    result["command"] = "python -m bench notify"
    inp = result["in_process"]
    print(
        f"one update to {n} recipients via json:// → local sink, as deployed "
        f"(one `python -m notifiers` process, as `crisis up` starts it; poll "
        f"{deployed['poll_seconds']:g} s): {deployed['seconds_total']:.2f} s total "
        f"(request_update {deployed['seconds_request_update']:.2f} s, then all sent after "
        f"{deployed['seconds_until_all_sent_after_commit']:.2f} s; target ≤ 5 s) · "
        f"sink received {deployed['sink_received']}, recorded sent {deployed['sent_recorded']}"
    )
    print(
        f"  in-process split: {inp['seconds_total']:.2f} s total "
        f"(request_update {inp['seconds_request_update']:.2f} s, "
        f"dispatch {inp['seconds_dispatch']:.2f} s; {inp['messages_per_second']:.0f} msg/s) · "
        f"sink received {inp['sink_received']}, recorded sent {inp['sent_recorded']}"
    )
    print(
        f"  with two dispatcher processes (--shard 0/2, 1/2): {two['seconds_total']:.2f} s · "
        f"sink received {two['sink_received']}, recorded sent {two['sent_recorded']}"
    )
    print(
        f"  targets built once at start-up: {inp['seconds_build_targets_once']:.2f} s · "
        f"stock apprise json:// for 1000: {inp['stock_apprise_1000_seconds']:.2f} s · "
        f"load average {result['load_average_1min_after']}"
    )
    print(
        "  hash chains verified (crisis.log.verify_log): "
        + ", ".join(str(r["log_entries_verified"]) for r in (deployed, inp, two))
        + " entries"
    )
    out = Path(os.environ.get("CRISIS_DATA_DIR", "var")) / "bench" / "notify.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"  written to {out}")
    ok = all(
        r["sink_received"] == n
        and r["sent_recorded"] == n
        and isinstance(r["log_entries_verified"], int)
        for r in (deployed, inp, two)
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
