"""Board feed latency: entry committed → message received, with many clients and a stalled one.

Starts the web server (uvicorn, SQLite) in a subprocess, connects ``CLIENTS`` websocket
clients that read and one that never reads, writes ``ENTRIES`` log entries through the API
one by one, and reports the delay from each entry's ``at`` (set in the writing transaction)
to its arrival at each reading client. Run: ``make bench`` or
``.venv/bin/python -m bench board``.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

from tests.boardserver import start_board_server

CLIENTS = 20
ENTRIES = 200


async def _run(base: str, token: str, incident: str) -> dict[str, float]:
    url = base.replace("http", "ws") + f"/ws/board?token={token}"
    delays: list[float] = []
    counts = [0] * CLIENTS

    async def reader(k: int, ws: object) -> None:
        async for raw in ws:  # type: ignore[attr-defined]
            msg = json.loads(raw)
            if msg.get("type") != "entry" or msg["entry"]["kind"] != "observation":
                continue
            at = datetime.fromisoformat(msg["entry"]["at"]).timestamp()
            delays.append(time.time() - at)
            counts[k] += 1
            if counts[k] == ENTRIES:
                return

    sockets = [await connect(url, max_queue=None) for _ in range(CLIENTS)]
    stalled = await connect(url, max_queue=1)  # reads nothing at all
    readers = [asyncio.create_task(reader(k, ws)) for k, ws in enumerate(sockets)]
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as client:
        start = time.perf_counter()
        for n in range(ENTRIES):
            r = await client.post(
                f"/api/v1/incidents/{incident}/entries",
                json={"kind": "observation", "text": f"bench {n}"},
            )
            r.raise_for_status()
        write_s = time.perf_counter() - start
    await asyncio.wait_for(asyncio.gather(*readers), timeout=120)
    for ws in [*sockets, stalled]:
        await ws.close()
    delays.sort()
    return {
        "clients": CLIENTS,
        "entries": ENTRIES,
        "writes_per_s": ENTRIES / write_s,
        "p50_ms": statistics.median(delays) * 1000,
        "p95_ms": delays[int(len(delays) * 0.95)] * 1000,
        "max_ms": delays[-1] * 1000,
        "delivered": len(delays) / (CLIENTS * ENTRIES),
    }


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp)
        server = start_board_server(path, f"sqlite+aiosqlite:///{path / 'bench.db'}")
        try:
            r = server.api(
                "POST",
                "/api/v1/incidents",
                "kdi",
                json={"type": "fire", "title": "Bench", "unit": "ringerike", "severity": 3},
            )
            r.raise_for_status()
            result = asyncio.run(_run(server.base, server.tokens["kdi"], r.json()["id"]))
        finally:
            server.stop()
    print(
        f"{result['clients']} reading clients + 1 stalled, {result['entries']} entries via the API "
        f"({result['writes_per_s']:.0f}/s, sequential)\n"
        f"commit → received: p50 {result['p50_ms']:.0f} ms, p95 {result['p95_ms']:.0f} ms, "
        f"max {result['max_ms']:.0f} ms; delivered {result['delivered']:.0%}"
    )
    return 0 if result["delivered"] == 1.0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
