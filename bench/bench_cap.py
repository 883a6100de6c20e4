"""/healthz while a heavy CAP alert is posted: does the web server's event loop stay free?

Starts the embedded broker and the web server (uvicorn, SQLite) in subprocesses, posts one
alert at a time to ``POST /api/v1/cap`` and probes ``/healthz`` one request after another
until the answer comes: the 1 MB alert of 13,000 polygons of issue 15, then one as heavy as
the default limits let through. A small alert goes first (what a server does once is not
measured), and /healthz is probed idle for comparison. Run: ``.venv/bin/python -m bench cap``.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import httpx

from crisis.kafka.broker import EmbeddedBroker
from tests import cap_load
from tests.boardserver import start_board_server
from tests.sources.test_cap import cap_xml

RUNS = 3


def _post_and_probe(base: str, token: str, body: bytes) -> tuple[int, float, list[float]]:
    def post() -> tuple[int, float]:
        start = time.perf_counter()
        with httpx.Client(base_url=base, timeout=120) as client:
            r = client.post(
                "/api/v1/cap",
                content=body,
                headers={**cap_load.CAP_HEADERS, "Authorization": f"Bearer {token}"},
            )
        return r.status_code, time.perf_counter() - start

    ((status, took),), probes = cap_load.healthz_during(base, [post])
    return status, took, probes


def main() -> int:
    alerts = {
        "13,000 polygons (issue 15)": cap_load.many_polygons(),
        "1,000 polygons of 70 points (within the limits)": cap_load.within_limits(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp)
        with EmbeddedBroker(log_path=path / "tansu.log") as broker:
            server = start_board_server(
                path,
                f"sqlite+aiosqlite:///{path / 'bench.db'}",
                CRISIS_KAFKA_BOOTSTRAP=broker.bootstrap,
            )
            try:
                base, token = server.base, server.tokens["kdi"]
                _post_and_probe(base, token, cap_xml(identifier="oppvarming"))  # first use
                with httpx.Client(base_url=base, timeout=30) as client:
                    idle = []
                    for _ in range(50):
                        start = time.perf_counter()
                        client.get("/healthz")
                        idle.append(time.perf_counter() - start)
                        time.sleep(0.02)
                print(
                    f"/healthz idle: median {statistics.median(idle) * 1000:.1f} ms, "
                    f"max {max(idle) * 1000:.1f} ms"
                )
                for name, body in alerts.items():
                    for run in range(RUNS):
                        status, took, probes = _post_and_probe(base, token, body)
                        print(
                            f"{name}, {len(body):,} bytes, run {run + 1}: answer {status} "
                            f"after {took * 1000:.0f} ms; /healthz meanwhile: {len(probes)} "
                            f"probes, median {statistics.median(probes) * 1000:.1f} ms, "
                            f"max {max(probes) * 1000:.1f} ms"
                        )
            finally:
                server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
