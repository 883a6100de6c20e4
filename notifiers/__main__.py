"""``python -m notifiers``: the dispatcher process (``crisis up`` starts it as a child)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from crisis.runtime.heartbeat import beat_forever
from crisis.runtime.metrics import serve_metrics, with_process_metrics
from crisis.settings import Settings
from crisis.store.db import make_engine, make_sessionmaker, migrate
from notifiers.config import NotifyConfigError, load_notify_config
from notifiers.dispatcher import Dispatcher, freeze_startup_heap
from notifiers.metrics import DispatcherMetrics


async def serve(settings: Settings, shard: tuple[int, int] = (0, 1)) -> int:
    try:
        config = load_notify_config(settings.notify_config)
    except NotifyConfigError as exc:
        print(f"notifiers: {exc}", file=sys.stderr)
        return 2
    engine = make_engine(settings)
    await migrate(engine)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    metrics = DispatcherMetrics()
    with_process_metrics(metrics.registry)
    port = settings.dispatcher_metrics_port
    serve_metrics(
        metrics.registry,
        port=port + shard[0] if port else 0,  # shard k of one host: the next ports
        host=settings.worker_metrics_host,
        role=f"dispatcher {shard[0]}/{shard[1]}",
        setting="CRISIS_DISPATCHER_METRICS_PORT",
    )
    dispatcher = Dispatcher(make_sessionmaker(engine), config, shard=shard, metrics=metrics)
    warmed = dispatcher.warm()
    freeze_startup_heap()
    source = settings.notify_config or "the shipped example (notifiers/data/notify.example.yaml)"
    print(
        f"notifiers: dispatcher {shard[0]}/{shard[1]} running, {warmed} targets from {source}",
        flush=True,
    )
    part = "dispatcher" if shard == (0, 1) else f"dispatcher-{shard[0]}"
    heart = asyncio.create_task(beat_forever(settings.effective_run_dir, part))
    try:
        await dispatcher.run(stop)
    finally:
        heart.cancel()
        await dispatcher.aclose()
        await engine.dispose()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m notifiers", description=__doc__)
    parser.add_argument(
        "--shard",
        default="0/1",
        help="K/N: deliver the outbox rows with id %% N == K (run N processes for N cores)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        k, n = (int(x) for x in args.shard.split("/"))
    except ValueError:
        parser.error("--shard must be K/N, e.g. 0/2")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    return asyncio.run(serve(Settings(), (k, n)))


if __name__ == "__main__":
    sys.exit(main())
