"""docker-compose.yml's crisis services run as local processes: they start and become healthy.

There is no Docker engine here, so each crisis service's command runs as a process with the
service's environment, its paths moved onto the repository files and volumes it mounts
(bind mounts → the repository, named volumes → a directory each), on PostgreSQL and the
embedded broker instead of the kafka and postgres services. The order is the compose file's:
``migrate`` to completion first. Then every health check command must pass, an event posted
to web-1 must reach the log and show on web-2, and the guide's ``crisis backup`` must work in
the anchor's environment.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from crisis.kafka.broker import EmbeddedBroker, free_port
from tests.conftest import PG_ENV, _pg_admin, _with_database
from tests.ingest_support import event
from tests.system.test_compose import (
    METRICS_PORT,
    ROOT,
    _interpolate,
    _mounts,
    env_example,
    load_compose,
)

pytestmark = [pytest.mark.postgres, pytest.mark.broker, pytest.mark.slow]

LONG_RUNNING = ("ingest-1", "ingest-2", "reactions", "dispatcher", "anchor", "web-1", "web-2")
DEADLINE = 120.0


@pytest.fixture
def pg_url() -> Iterator[str]:
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"{PG_ENV} is not set: the compose services run on PostgreSQL")
    name = f"crisis_test_{secrets.token_hex(6)}"
    asyncio.run(_pg_admin(url, f'CREATE DATABASE "{name}"'))
    try:
        yield _with_database(url, name)
    finally:
        asyncio.run(_pg_admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


class Service:
    """One compose service as a local process: its argv, environment and health check."""

    def __init__(self, name: str, spec: dict[str, Any], tmp: Path, db: str, kafka: str) -> None:
        self.name = name
        self.paths: list[tuple[str, Path]] = []
        for kind, source, target in _mounts(spec):
            local = ROOT / source if kind == "bind" else tmp / "volumes" / source
            if kind != "bind":
                local.mkdir(parents=True, exist_ok=True)
            self.paths.append((target, local))
        self.paths.sort(key=lambda p: -len(p[0]))
        self.port = free_port()
        defaults = env_example()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CRISIS_")}
        self.env["PYTHONPATH"] = str(ROOT)
        for key, raw in (spec.get("environment") or {}).items():
            self.env[key] = self.local(_interpolate(str(raw), defaults))
        self.env["CRISIS_DATABASE_URL"] = db
        if "CRISIS_KAFKA_BOOTSTRAP" in self.env:
            self.env["CRISIS_KAFKA_BOOTSTRAP"] = kafka
        for port in METRICS_PORT.values():  # each process its own: they share one host here
            self.env[port] = str(free_port())
        self.env["CRISIS_WORKER_METRICS_HOST"] = "127.0.0.1"
        self.argv = self.command(spec["command"])
        health = spec.get("healthcheck", {}).get("test")
        self.health = self.command(health[1:]) if health else None
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = tmp / f"{name}.log"

    def local(self, value: str) -> str:
        """A container path or address as this machine has it."""
        for target, local in self.paths:
            if value == target or value.startswith(target + "/"):
                return str(local) + value[len(target) :]
        return value.replace("127.0.0.1:8000/", f"127.0.0.1:{self.port}/")

    def command(self, argv: list[str]) -> list[str]:
        argv = [self.local(a) for a in argv]
        if argv[:2] == ["crisis", "web"]:
            argv[argv.index("--port") + 1] = str(self.port)
            argv[argv.index("--host") + 1] = "127.0.0.1"
        if argv[0] == "crisis":
            return [sys.executable, "-m", "crisis.cli", *argv[1:]]
        if argv[0] == "python":
            return [sys.executable, *argv[1:]]
        return argv

    def start(self) -> None:
        log: IO[bytes] = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.log_path.parent
        )
        log.close()

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``docker compose exec SERVICE crisis ARGS``."""
        return subprocess.run(
            [sys.executable, "-m", "crisis.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def ready(self) -> bool:
        """A cheap look at what the health check tests, before running it (a process each)."""
        assert self.health is not None
        text = " ".join(self.health)
        if url := re.search(r"http://[^'\"\s]+", text):
            try:
                with urllib.request.urlopen(url.group(0), timeout=2):  # noqa: S310 (loopback)
                    return True
            except OSError:
                return False
        if beat := re.search(r"age\(.*?'([\w-]+)'\)", text):
            return (Path(self.env["CRISIS_DATA_DIR"]) / "run" / f"{beat.group(1)}.beat").exists()
        return Path(self.health[-1]).exists()

    def healthy(self) -> bool:
        assert self.health is not None
        done = subprocess.run(self.health, env=self.env, capture_output=True, timeout=30)
        return done.returncode == 0

    def tail(self) -> str:
        return f"--- {self.name} ---\n" + self.log_path.read_text(errors="replace")[-2000:]


async def _token(database_url: str) -> str:
    from crisis.accounts import service as accounts
    from crisis.store.db import make_engine, make_sessionmaker

    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            await accounts.add_user(session, name="ops", role="admin", password="correct horse")
            token = await accounts.create_token(session, name="ops")
            await session.commit()
            return token
    finally:
        await engine.dispose()


def _get(url: str, token: str) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})  # noqa: S310 (loopback)
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (loopback)
        return json.loads(response.read())


def _post(url: str, token: str, body: object) -> int:
    request = urllib.request.Request(  # noqa: S310 (loopback)
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return int(response.status)


def test_the_compose_services_start_and_become_healthy(tmp_path: Path, pg_url: str) -> None:
    spec = load_compose()["services"]
    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as broker:
        services = {
            name: Service(name, spec[name], tmp_path, pg_url, broker.bootstrap)
            for name in ("migrate", *LONG_RUNNING)
        }
        migrate = services["migrate"]
        migrate.start()
        assert migrate.proc is not None
        assert migrate.proc.wait(timeout=60) == 0, migrate.tail()
        running = [services[name] for name in LONG_RUNNING]
        try:
            for service in running:
                service.start()
            web1, web2, anchor = services["web-1"], services["web-2"], services["anchor"]
            # Meanwhile, as `docker compose exec web-1 crisis token create` would.
            token = asyncio.run(_token(web1.env["CRISIS_DATABASE_URL"]))
            waiting = list(running)
            deadline = time.monotonic() + DEADLINE
            while waiting and time.monotonic() < deadline:
                for service in list(waiting):
                    assert service.proc is not None and service.proc.poll() is None, service.tail()
                    if service.ready() and service.healthy():
                        waiting.remove(service)
                time.sleep(0.5)
            assert not waiting, "\n".join(s.tail() for s in waiting)

            alarm = event(1)
            status = _post(f"http://127.0.0.1:{web1.port}/api/v1/events", token, [alarm])
            assert status == 202
            incidents: list[Any] = []
            while not incidents and time.monotonic() < deadline + 30:
                incidents = _get(f"http://127.0.0.1:{web2.port}/api/v1/incidents", token)
                time.sleep(0.5)
            assert [i["unit"] for i in incidents] == ["agder-froland"], incidents

            # Every process Prometheus scrapes answers on the port its compose entry sets.
            for name in ("ingest-1", "ingest-2", "reactions", "dispatcher"):
                port = services[name].env[METRICS_PORT[name.rstrip("-12")]]
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    assert b"process_cpu_seconds_total" in r.read(), name

            archive = tmp_path / "volumes" / "anchor-data" / "backup.tar.gz"
            backed = anchor.run("backup", "-o", anchor.local("/var/lib/crisis/backup.tar.gz"))
            assert backed.returncode == 0, backed.stderr
            assert archive.stat().st_size > 0
        finally:
            for service in running:
                if service.proc is not None and service.proc.poll() is None:
                    service.proc.send_signal(signal.SIGTERM)
            for service in running:
                if service.proc is None:
                    continue
                try:
                    service.proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    service.proc.kill()
                    service.proc.wait()
