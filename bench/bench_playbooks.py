"""How long the playbook engine takes to react to an incident's opening, and to a later entry.

Opens N incidents (cycling through every shipped incident type) on SQLite in a temp dir, then
times ``react`` on each opening (owner, tasks, contacts, plan, escalation check; one commit) and
on one later observation per incident (escalation check only). Prints a table and the JSON.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from crisis.domain.organisation import load_organisation
from crisis.log.append import append, open_incident
from crisis.log.models import IncidentCreate
from crisis.store.db import make_engine, make_sessionmaker, migrate
from playbooks import engine as pb
from playbooks.loader import load_library

N = 300


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _run(folder: Path) -> dict[str, Any]:
    org = load_organisation()
    library = load_library(org=org)
    kinds = sorted(library.incident_types)
    units = [u.id for u in org.units.values()]
    engine = make_engine(f"sqlite+aiosqlite:///{folder / 'bench.db'}")
    await migrate(engine)
    sessions = make_sessionmaker(engine)
    opening_ms: list[float] = []
    later_ms: list[float] = []
    written = 0
    try:
        for n in range(N):
            async with sessions() as session:
                _, opening = await open_incident(
                    session,
                    incident=IncidentCreate(
                        type=kinds[n % len(kinds)],
                        title=f"bench {n}",
                        unit=units[n % len(units)],
                        severity=2,
                    ),
                    actor="system:bench",
                )
                await session.commit()
            started = time.perf_counter()
            async with sessions() as session:
                written += len(await pb.react(session, entry=opening, org=org, library=library))
                await session.commit()
            opening_ms.append((time.perf_counter() - started) * 1000)
            async with sessions() as session:
                later = await append(
                    session,
                    incident_id=opening.incident_id,
                    kind="observation",
                    actor="user:bench",
                    text="status",
                )
                await session.commit()
            started = time.perf_counter()
            async with sessions() as session:
                await pb.react(session, entry=later, org=org, library=library)
                await session.commit()
            later_ms.append((time.perf_counter() - started) * 1000)
    finally:
        await engine.dispose()
    return {
        "incidents": N,
        "entries_written_on_opening": written,
        "opening_react_ms": {
            "p50": round(statistics.median(opening_ms), 2),
            "p99": round(_pct(opening_ms, 0.99), 2),
        },
        "later_entry_react_ms": {
            "p50": round(statistics.median(later_ms), 2),
            "p99": round(_pct(later_ms, 0.99), 2),
        },
        "database": "sqlite",
    }


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(_run(Path(tmp)))
    print(
        f"playbook engine on SQLite, {result['incidents']} incidents "
        f"({result['entries_written_on_opening']} entries written on opening)"
    )
    print("| reaction | p50 ms | p99 ms |\n|---|---|---|")
    for key in ("opening_react_ms", "later_entry_react_ms"):
        print(f"| {key.removesuffix('_react_ms')} | {result[key]['p50']} | {result[key]['p99']} |")
    print(json.dumps(result))
    return 0
