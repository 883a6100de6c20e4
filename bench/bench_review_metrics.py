"""Aggregate response metrics: ``GET /api/v1/metrics/response`` over many incidents (SQLite).

Seeds ``INCIDENTS`` scripted incidents (``tests/review/scripted.py``) of ``ENTRIES`` entries
each across the organisation's units and three months, then times the endpoint in process
(httpx over ASGI, a national role, so every incident is read) for each grouping. Run:
``.venv/bin/python -m bench review_metrics``.
"""

from __future__ import annotations

import asyncio
import secrets
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from crisis.log.append import EntrySpec, append, append_many
from crisis.log.models import Incident
from crisis.settings import Settings
from tests.conftest import api_for
from tests.review.scripted import T0, at, scripted_incident

INCIDENTS = 500
ENTRIES = 50
ROUNDS = 5


async def _seed(api: object, units: list[str]) -> None:
    sessions = api.app.state.sessions  # type: ignore[attr-defined]
    for n in range(INCIDENTS):
        t0 = T0 + timedelta(hours=4 * n)
        iid = f"b{n:05d}"
        async with sessions() as session:
            await scripted_incident(
                session,
                incident_id=iid,
                t0=t0,
                unit=units[n % len(units)],
                public_first=n % 7 == 0,
                close=False,
            )
            incident = await session.get(Incident, iid)
            assert incident is not None
            more = ENTRIES - 1 - incident.head_seq
            specs = [EntrySpec("observation", "user:op", f"obs {k}") for k in range(more)]
            await append_many(session, incident_id=iid, specs=specs, at=at(7000, t0))
            await append(
                session,
                incident_id=iid,
                kind="status_change",
                actor="user:op",
                text="lukket",
                data={"status": "closed", "reason": "avklart", "final_situation": "normal"},
                at=at(7800, t0),
            )
            await session.commit()


async def _run() -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp)
        settings = Settings(
            data_dir=path / "var",
            database_url=f"sqlite+aiosqlite:///{path / 'bench.db'}",
            secret_key=secrets.token_hex(16),
        )
        async with api_for(settings) as api:
            units = list(api.app.state.organisation.units)
            started = time.perf_counter()
            await _seed(api, units)
            print(
                f"seeded {INCIDENTS} × {ENTRIES} entries in {time.perf_counter() - started:.1f} s"
            )
            headers = await api.user("bench-kdi", "kdi")
            out: dict[str, dict[str, float]] = {}
            for group_by in ("unit", "region", "type", "month", "week", "all"):
                times = []
                for _ in range(ROUNDS):
                    t = time.perf_counter()
                    r = await api.client.get(
                        f"/api/v1/metrics/response?group_by={group_by}", headers=headers
                    )
                    times.append(time.perf_counter() - t)
                    r.raise_for_status()
                    assert r.json()["incidents"] == INCIDENTS
                out[group_by] = {
                    "median_ms": statistics.median(times) * 1000,
                    "min_ms": min(times) * 1000,
                    "max_ms": max(times) * 1000,
                }
            return out


def main() -> int:
    results = asyncio.run(_run())
    print(f"{'group_by':<10}{'median ms':>12}{'min ms':>10}{'max ms':>10}")
    for group_by, r in results.items():
        print(f"{group_by:<10}{r['median_ms']:>12.0f}{r['min_ms']:>10.0f}{r['max_ms']:>10.0f}")
    return 0
