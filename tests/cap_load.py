"""Heavy CAP alerts and a /healthz probe: what the heavy-document test and bench share.

``many_polygons`` is the finding of issue 15: about 1 MB of small polygons (13,000 of them)
that, parsed and matched in the event loop, stalled every other request. ``within_limits``
is as heavy as the default limits allow (1,000 polygons of many points, about 1 MB).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import httpx

CAP_HEADERS = {"content-type": "application/cap+xml"}
T = TypeVar("T")


def _ring(lat: float, lon: float, points: int, size: float) -> str:
    """A closed, simple ring of ``points`` points (a regular polygon around lat, lon)."""
    pairs = [
        f"{lat + size * math.sin(2 * math.pi * k / (points - 1)):.3f},"
        f"{lon + size * math.cos(2 * math.pi * k / (points - 1)):.3f}"
        for k in range(points - 1)
    ]
    return " ".join([*pairs, pairs[0]])


def alert(polygons: int, points: int, *, identifier: str = "tung-1") -> bytes:
    """An Actual alert with ``polygons`` rings of ``points`` points over southern Norway's
    units (Agder, Telemark, Oslo), so every unit is matched against every polygon."""
    spots = [(58.53, 8.65), (58.03, 7.45), (59.21, 9.6), (59.91, 10.77), (60.08, 10.1)]
    rings = "".join(
        f"<polygon>{_ring(*spots[i % len(spots)], points, 0.05 + (i % 7) * 0.01)}</polygon>"
        for i in range(polygons)
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>{identifier}</identifier>
<sender>varsel@nve.no</sender><sent>2026-11-22T08:00:00+01:00</sent><status>Actual</status>
<msgType>Alert</msgType><scope>Public</scope><info><language>nb-NO</language>
<category>Met</category><event>Flom</event><urgency>Expected</urgency><severity>Severe</severity>
<certainty>Likely</certainty><headline>Flom</headline>
<area><areaDesc>Sør-Norge</areaDesc>{rings}</area></info></alert>""".encode()


def many_polygons() -> bytes:
    """The finding's alert: 13,000 small polygons, about 1 MB."""
    return alert(13_000, 4)


def within_limits() -> bytes:
    """As heavy as the default limits let through: 1,000 polygons of 70 points, about 1 MB."""
    return alert(1_000, 70, identifier="tung-2")


def healthz_during(
    base: str, jobs: Sequence[Callable[[], T]], *, every: float = 0.02
) -> tuple[list[T], list[float]]:
    """Run ``jobs`` at once, each in a thread of its own, and probe /healthz one request after
    another (``every`` apart) until all are done: (the jobs' results, seconds per probe). The
    load runs in threads so that sending it does not delay the probes' own client."""
    times: list[float] = []
    with httpx.Client(base_url=base, timeout=30) as client:
        client.get("/healthz")  # the connection is open before the load starts
        with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            futures = [pool.submit(job) for job in jobs]
            while not all(f.done() for f in futures):
                start = time.perf_counter()
                client.get("/healthz")
                times.append(time.perf_counter() - start)
                time.sleep(every)
            return [f.result() for f in futures], times
