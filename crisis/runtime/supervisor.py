"""The supervised process tree of ``crisis up``: restart what dies, stop in the right order.

Every part is a child process (the broker, ``python -m streams worker --role ingest``,
``… --role reactions``, ``python -m notifiers``, ``python -m web``, the log anchor). One
child's death never stops the others: it is restarted after a back-off that doubles from half
a second to half a minute and falls back once the part has run for a while. A restarted
broker comes back empty (memory storage), so the two workers that consume it are restarted
with it; the web's outbox sends what the log does not yet hold again (crisis.producer).

Stopping (SIGINT/SIGTERM): the web first refuses new events (503 with Retry-After, while the
``draining`` file exists), the tree waits until the outbox is empty -- every accepted event is
in the crisis log -- or the drain time is up, then stops the web, the other parts and the
broker last. A second signal skips the wait; the outbox keeps what was not logged for the
next start.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from crisis.kafka.broker import BrokerError, EmbeddedBroker, die_with_parent
from crisis.runtime.heartbeat import BROKER_FILE, DRAINING_FILE, TREE_FILE, write_json

#: Parts that read the broker: restarted with it, because an empty broker lost their offsets.
BROKER_READERS = ("ingest", "reactions")
BACKOFF_MIN = 0.5
BACKOFF_MAX = 30.0
#: A part that ran this long before it died starts again at the shortest back-off.
STABLE_AFTER = 30.0


@dataclass
class Part:
    name: str
    argv: list[str] | None  # None: the embedded broker
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    failures: int = 0
    started_at: float = 0.0
    next_start: float = 0.0
    state: str = "stopped"
    last_exit: str | None = None
    log_file: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None


def _describe(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
    return f"exit code {code}"


class Supervisor:
    """Starts the parts, restarts the dead ones, writes ``up.json``, stops gracefully."""

    def __init__(
        self,
        *,
        parts: Sequence[Part],
        env: dict[str, str],
        run_dir: Path,
        logs: Path,
        outbox: Path | None,
        broker: EmbeddedBroker | None = None,
        drain_seconds: float = 30.0,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.parts = {p.name: p for p in parts}
        self.env = env
        self.run_dir = run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        self.logs = logs
        self.outbox = outbox
        self.broker = broker
        self.drain_seconds = drain_seconds
        self.signals = 0
        self._say = say or (lambda line: print(line, file=sys.stderr, flush=True))
        self._log = open(logs / "supervisor.log", "a", buffering=1)

    # ----------------------------------------------------------------- output
    def say(self, line: str) -> None:
        stamp = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        self._log.write(f"{stamp} {line}\n")
        self._say(f"crisis up: {line}")

    def write_state(self) -> None:
        parts: dict[str, Any] = {}
        for part in self.parts.values():
            parts[part.name] = {
                "pid": self._pid(part),
                "state": part.state,
                "restarts": part.restarts,
                "last_exit": part.last_exit,
            }
        state = {
            "supervisor": os.getpid(),
            "bootstrap": self.broker.bootstrap
            if self.broker
            else self.env.get("CRISIS_KAFKA_BOOTSTRAP"),
            "draining": self.signals > 0,
            "parts": parts,
        }
        with contextlib.suppress(OSError):  # a full disk must not stop the supervisor
            write_json(self.run_dir / TREE_FILE, state)

    # ---------------------------------------------------------------- running
    def _spawn(self, part: Part) -> bool:
        try:
            self._launch(part)
        except (BrokerError, OSError, subprocess.SubprocessError) as exc:
            self.say(
                f"{part.name} did not start: {str(exc).splitlines()[0] if str(exc) else exc!r}"
            )
            return False
        part.state = "running"
        part.started_at = time.monotonic()
        return True

    def _launch(self, part: Part) -> None:
        if part.argv is None:
            assert self.broker is not None
            self.broker.start()
            # Every start is a new, empty broker: what was read from the last one is gone.
            write_json(self.run_dir / BROKER_FILE, {"incarnation": uuid.uuid4().hex})
        else:
            if part.log_file is None:
                part.log_file = open(self.logs / f"{part.name}.log", "ab")
            # Their own process group: a Ctrl-C in the terminal reaches the supervisor only,
            # which drains before it stops them in order.
            part.proc = subprocess.Popen(
                part.argv,
                env=self.env,
                stdout=part.log_file,
                stderr=subprocess.STDOUT,
                process_group=0,
                preexec_fn=die_with_parent,
            )

    def start(self, names: Sequence[str] | None = None) -> None:
        for name in names or list(self.parts):
            part = self.parts[name]
            if not self._spawn(part):
                self._schedule(part, "did not start")
        self.write_state()

    def _alive(self, part: Part) -> bool:
        if part.argv is None:
            return self.broker is not None and self.broker.running
        return part.proc is not None and part.proc.poll() is None

    def _exit_text(self, part: Part) -> str:
        if part.argv is None:
            code = self.broker.returncode if self.broker is not None else None
        else:
            code = part.proc.poll() if part.proc is not None else None
        return _describe(code) if code is not None else "gone"

    def _schedule(self, part: Part, why: str) -> None:
        ran = time.monotonic() - part.started_at if part.started_at else 0.0
        part.failures = 1 if ran >= STABLE_AFTER else part.failures + 1
        delay = min(BACKOFF_MAX, BACKOFF_MIN * 2 ** (part.failures - 1))
        part.state = "backoff"
        part.next_start = time.monotonic() + delay
        part.last_exit = why
        self.say(f"{part.name} {why}; restart {part.restarts + 1} in {delay:.1f} s")

    def _reap(self, part: Part) -> str:
        why = self._exit_text(part)
        if part.argv is None and self.broker is not None:
            self.broker.stop()  # reaps it and anything left in its process group
        part.proc = None
        return why

    def tick(self) -> None:
        """One round: notice deaths, start what is due. Called every ~0.2 s."""
        changed = False
        now = time.monotonic()
        for part in self.parts.values():
            if part.state == "running" and not self._alive(part):
                self._schedule(part, f"died ({self._reap(part)})")
                if part.argv is None:
                    self._stop_readers()
                changed = True
            elif part.state == "backoff" and now >= part.next_start:
                if self._spawn(part):
                    part.restarts += 1
                    self.say(f"{part.name} restarted (pid {self._pid(part)})")
                else:
                    self._schedule(part, "did not start")
                changed = True
        broker = self.parts.get("broker")
        if broker is None or broker.state == "running":
            for part in self.parts.values():
                if part.state == "waiting" and self._spawn(part):
                    part.restarts += 1
                    self.say(f"{part.name} restarted with the broker (pid {part.pid})")
                    changed = True
        if changed:
            self.write_state()

    def _stop_readers(self) -> None:
        """The broker died empty-handed: its readers wait for the next one, and join it afresh.

        Stopped before the broker is back, so nothing of theirs reaches the new broker first.
        """
        for name in BROKER_READERS:
            reader = self.parts.get(name)
            if reader is not None and reader.state == "running":
                self._terminate([reader])
                reader.state = "waiting"
                reader.last_exit = "stopped with the broker"
                self.say(f"{name} stopped until the broker is back")

    def _pid(self, part: Part) -> int | None:
        return self.broker.pid if part.argv is None and self.broker else part.pid

    # --------------------------------------------------------------- stopping
    def outbox_depth(self) -> int | None:
        """Accepted events not yet in the crisis log (the web's outbox), read from its file."""
        if self.outbox is None or not self.outbox.exists():
            return 0
        try:
            with contextlib.closing(sqlite3.connect(f"file:{self.outbox}?mode=ro", uri=True)) as db:
                return int(db.execute("SELECT count(*) FROM outbox").fetchone()[0])
        except sqlite3.Error:
            return None

    def drain(self) -> None:
        """Refuse new events, then wait (still supervising) until the outbox is empty."""
        with contextlib.suppress(OSError):  # with our pid: a killed tree's file is ignored
            (self.run_dir / DRAINING_FILE).write_text(str(os.getpid()))
        self.write_state()
        deadline = time.monotonic() + self.drain_seconds
        said = 0.0
        signals = self.signals
        while time.monotonic() < deadline and self.signals == signals:
            depth = self.outbox_depth()
            if depth == 0:
                self.say("every accepted event is in the crisis log")
                return
            if time.monotonic() - said >= 2.0:
                said = time.monotonic()
                self.say(f"draining: {depth} accepted events not yet in the crisis log")
            self.tick()
            time.sleep(0.2)
        depth = self.outbox_depth()
        self.say(f"stopping with {depth} events in the outbox; the next start sends them")

    def _terminate(self, parts: Sequence[Part], timeout: float = 15.0) -> None:
        for part in parts:
            if part.proc is not None and part.proc.poll() is None:
                part.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for part in parts:
            if part.proc is None:
                continue
            try:
                part.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                part.proc.kill()
                part.proc.wait()
            part.proc = None
            part.state = "stopped"

    def stop(self) -> None:
        """Web first (no new events), then the other parts, the broker last."""
        order = ["web", *[n for n in self.parts if n not in ("web", "broker")]]
        for name in order:
            if name in self.parts:
                self._terminate([self.parts[name]])
        if self.broker is not None:
            self.broker.stop()
            if "broker" in self.parts:
                self.parts["broker"].state = "stopped"
        self.write_state()
        with contextlib.suppress(OSError):
            (self.run_dir / DRAINING_FILE).unlink(missing_ok=True)
        for part in self.parts.values():
            if part.log_file is not None:
                part.log_file.close()
        self._log.close()
