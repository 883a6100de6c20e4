"""The supervisor of ``crisis up``: restarts with back-off, others untouched, drain, stop order."""

from __future__ import annotations

import json
import sqlite3
import sys
import threading
import time
from pathlib import Path

import pytest

from crisis.kafka.broker import EmbeddedBroker, free_port
from crisis.kafka.outbox import Outbox, Record
from crisis.runtime import supervisor as sup
from crisis.runtime.supervisor import Part, Supervisor

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]
CRASHER = [sys.executable, "-c", "raise SystemExit(3)"]
#: Writes its name and the time to a file when SIGTERM arrives, then exits.
RECORDER = (
    "import signal, sys, time\n"
    "def bye(*_):\n"
    "    open(sys.argv[1], 'a').write(sys.argv[2] + ' ' + repr(time.monotonic()) + '\\n')\n"
    "    sys.exit(0)\n"
    "signal.signal(signal.SIGTERM, bye)\n"
    "time.sleep(120)\n"
)


def _supervisor(
    tmp_path: Path,
    parts: list[Part],
    outbox: Path | None = None,
    broker: EmbeddedBroker | None = None,
) -> Supervisor:
    (tmp_path / "logs").mkdir(exist_ok=True)
    lines: list[str] = []
    s = Supervisor(
        parts=parts,
        env={},
        run_dir=tmp_path / "run",
        logs=tmp_path / "logs",
        outbox=outbox,
        broker=broker,
        drain_seconds=10.0,
        say=lines.append,
    )
    s.lines = lines  # type: ignore[attr-defined]
    return s


def _run(s: Supervisor, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        s.tick()
        time.sleep(0.05)


def test_a_dying_part_is_restarted_with_back_off_and_the_others_keep_running(
    tmp_path: Path,
) -> None:
    s = _supervisor(tmp_path, [Part("steady", SLEEPER), Part("flaky", CRASHER)])
    s.start()
    try:
        steady_pid = s.parts["steady"].pid
        _run(s, 2.5)  # back-off 0.5, 1.0, 2.0: at most three restarts in 2.5 s
        flaky = s.parts["flaky"]
        assert 1 <= flaky.restarts <= 3
        assert flaky.failures == flaky.restarts + (flaky.state == "backoff")
        assert s.parts["steady"].pid == steady_pid and s.parts["steady"].state == "running"
        said = "\n".join(s.lines)  # type: ignore[attr-defined]
        assert "flaky died (exit code 3); restart 1 in 0.5 s" in said
        assert "restart 2 in 1.0 s" in said
        state = json.loads((tmp_path / "run" / "up.json").read_text())
        assert state["parts"]["flaky"]["restarts"] == flaky.restarts
        assert state["parts"]["steady"]["pid"] == steady_pid
    finally:
        s.stop()
    assert s.parts["steady"].state == "stopped"


def test_back_off_is_capped_and_falls_back_after_a_stable_run(tmp_path: Path) -> None:
    s = _supervisor(tmp_path, [Part("p", CRASHER)])
    part = s.parts["p"]
    part.failures = 20
    part.started_at = time.monotonic()
    s._schedule(part, "died")
    assert part.next_start - time.monotonic() <= sup.BACKOFF_MAX
    part.started_at = time.monotonic() - sup.STABLE_AFTER - 1
    s._schedule(part, "died")
    assert part.failures == 1
    assert part.next_start - time.monotonic() <= sup.BACKOFF_MIN + 0.01
    s.stop()


def test_drain_waits_for_the_outbox_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    box = Outbox(path)
    box.append([Record("t", None, b"{}", 0, ("s", str(i))) for i in range(3)])
    s = _supervisor(tmp_path, [], outbox=path)
    assert s.outbox_depth() == 3

    def log_takes_them() -> None:
        time.sleep(1.0)
        box.remove([seq for seq, _ in box.peek(10)])

    worker = threading.Thread(target=log_takes_them)
    worker.start()
    started = time.monotonic()
    s.drain()
    waited = time.monotonic() - started
    worker.join()
    assert 0.9 <= waited < 5
    assert (tmp_path / "run" / "draining").exists()
    assert "every accepted event is in the crisis log" in s.lines[-1]  # type: ignore[attr-defined]
    s.stop()
    assert not (tmp_path / "run" / "draining").exists()
    box.close()


def test_a_second_signal_skips_the_drain_and_the_outbox_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    box = Outbox(path)
    box.append([Record("t", None, b"{}", 0, ("s", "1"))])
    s = _supervisor(tmp_path, [], outbox=path)
    s.signals = 1
    threading.Timer(0.5, lambda: setattr(s, "signals", 2)).start()
    started = time.monotonic()
    s.drain()
    assert time.monotonic() - started < 3
    assert "stopping with 1 events in the outbox" in s.lines[-1]  # type: ignore[attr-defined]
    s.stop()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM outbox").fetchone()[0] == 1
    box.close()


def test_the_web_stops_first(tmp_path: Path) -> None:
    record = tmp_path / "order.txt"
    parts = [
        Part(name, [sys.executable, "-c", RECORDER, str(record), name])
        for name in ("ingest", "web", "dispatcher")
    ]
    s = _supervisor(tmp_path, parts)
    s.start()
    time.sleep(0.5)  # let them install their handlers
    s.stop()
    order = [line.split()[0] for line in record.read_text().splitlines()]
    assert order[0] == "web"
    assert sorted(order) == ["dispatcher", "ingest", "web"]


@pytest.mark.broker
def test_a_dead_broker_stops_its_readers_until_it_is_back_empty(tmp_path: Path) -> None:
    broker = EmbeddedBroker(port=free_port(), log_path=tmp_path / "logs" / "broker.log")
    parts = [Part("broker", None), Part("ingest", SLEEPER), Part("web", SLEEPER)]
    s = _supervisor(tmp_path, parts, broker=broker)
    lines: list[str] = s.lines  # type: ignore[attr-defined]
    s.start()
    try:
        first = json.loads((tmp_path / "run" / "broker.json").read_text())["incarnation"]
        ingest_pid, web_pid = s.parts["ingest"].pid, s.parts["web"].pid
        broker.kill()
        s.tick()  # notices the death: the reader stops before any new broker exists
        assert s.parts["ingest"].state == "waiting" and s.parts["ingest"].proc is None
        _run(s, 3.0)
        assert s.parts["broker"].state == "running" and broker.running
        assert s.parts["ingest"].state == "running" and s.parts["ingest"].pid != ingest_pid
        assert s.parts["web"].pid == web_pid  # not a reader: untouched
        second = json.loads((tmp_path / "run" / "broker.json").read_text())["incarnation"]
        assert second != first
        said = "\n".join(lines)
        assert "ingest stopped until the broker is back" in said
        assert "ingest restarted with the broker" in said
    finally:
        s.stop()
