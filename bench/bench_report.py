"""Report export of a long incident: JSON, HTML and PDF of ``CRISIS_BENCH_REPORT_ENTRIES``
log entries (10,000 by default), built through the append service on SQLite.

Seven in ten added entries are observations (one activity row each), three in ten delivery
receipts, ten per update (folded into one row per update). Each format is exported the way
``crisis report`` does it (verify the chain, read, build, audit, render). Run:
``.venv/bin/python -m bench report`` (``make bench`` runs it with the others).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path

from crisis.domain.rules import NOTIFIER_ACTOR
from crisis.log.append import EntrySpec, append_many
from crisis.review import report as review_report
from crisis.store.db import make_engine, make_sessionmaker, migrate
from tests.review.scenario import Viewer, build_incident

ENTRIES = int(os.environ.get("CRISIS_BENCH_REPORT_ENTRIES", "10000"))
BATCH = 500


def _specs(n: int) -> list[EntrySpec]:
    if n % 10 < 7:
        return [EntrySpec(kind="observation", actor="user:ola", text=f"Observasjon {n}")]
    return [
        EntrySpec(
            kind="message",
            actor=NOTIFIER_ACTOR,
            text=f"Varsel {n}",
            data={
                "update_id": f"u-{n // 100}",
                "group": "staff",
                "recipient": f"vakt-{n}",
                "status": "sent",
            },
        )
    ]


async def run(entries: int, data_dir: Path) -> dict[str, float | int]:
    """Build an incident of about ``entries`` entries and export it in each format; seconds
    per format, the PDF's size and the entry count."""
    engine = make_engine(f"sqlite+aiosqlite:///{data_dir / 'bench.db'}")
    await migrate(engine)
    sessions = make_sessionmaker(engine)
    async with sessions() as session:
        await build_incident(session, incident_id="inc-bench", close=False)
    async with sessions() as session:
        head = (await session.get(review_report.Incident, "inc-bench")).head_seq  # type: ignore[union-attr]
        specs = [s for n in range(max(entries - head, 0)) for s in _specs(n)]
        for start in range(0, len(specs), BATCH):
            await append_many(session, incident_id="inc-bench", specs=specs[start : start + BATCH])
        await session.commit()
    result: dict[str, float | int] = {}
    viewer = Viewer("bench", "admin")
    for fmt in review_report.FORMATS:
        async with sessions() as session:
            began = time.perf_counter()
            report, body = await review_report.export_report(
                session, incident_id="inc-bench", viewer=viewer, fmt=fmt
            )
            await session.commit()
            result[f"{fmt}_s"] = time.perf_counter() - began
            result[f"{fmt}_bytes"] = len(body)
            result["entries"] = report.integrity.entry_count
            result["rows"] = len(report.activity)
            assert report.integrity.verified
    await engine.dispose()
    return result


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(run(ENTRIES, Path(tmp)))
    print(
        f"report export of {result['entries']} entries ({result['rows']} activity rows), "
        "verify + read + build + audit + render:"
    )
    for fmt in review_report.FORMATS:
        print(f"  {fmt:<4} {result[f'{fmt}_s']:6.1f} s  {result[f'{fmt}_bytes'] / 1e6:6.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
