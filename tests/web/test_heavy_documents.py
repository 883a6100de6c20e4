"""Heavy and hostile CAP alerts (issue 15): refused by limit before they are read, parsed off
the event loop, and /healthz answers meanwhile.

Each refusal is a 4xx naming its limit (the setting, where there is one) and nothing reaches
``crisis.events``; an alert within the limits is accepted with the units it covers, while a
real server keeps answering ``/healthz`` under a login storm.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from crisis.kafka import topics
from crisis.kafka.broker import EmbeddedBroker
from tests import cap_load
from tests.boardserver import start_board_server
from tests.conftest import ApiHarness
from tests.ingest_support import ingest_api, ingest_settings, read_topic
from tests.sources.test_cap import cap_xml

pytestmark = pytest.mark.broker

#: The units inside ``cap_load``'s polygons (around Froland, Mandal, Skien, Oslo, Hønefoss).
SOUTH = ["agder-froland", "agder-mandal", "ringerike", "telemark-skien", "oslo", "oslo-friomsorg"]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as running:
        yield running


@pytest.fixture
async def api(tmp_path: Path, broker: EmbeddedBroker) -> AsyncIterator[ApiHarness]:
    settings = ingest_settings(tmp_path, broker.bootstrap, cap_max_body_bytes=64 * 1024)
    async with ingest_api(settings) as harness:
        yield harness


async def _post(api: ApiHarness, body: bytes) -> httpx.Response:
    headers = await api.user(f"kdi-{time.monotonic_ns()}", "kdi")
    return await api.client.post(
        "/api/v1/cap", content=body, headers={**headers, **cap_load.CAP_HEADERS}
    )


def _area(polygons: int = 1, points: int = 5) -> str:
    return "".join(
        f"<polygon>{cap_load._ring(58.53, 8.65, points, 0.05)}</polygon>" for _ in range(polygons)
    )


async def test_each_limit_is_a_4xx_naming_it_and_nothing_is_accepted(
    api: ApiHarness, broker: EmbeddedBroker
) -> None:
    info = cap_xml().decode().split("<info>", 1)[1].split("</info>", 1)[0]
    more_areas = "</area><area><areaDesc>A</areaDesc>" * 100
    refusals: list[tuple[bytes, int, str, str]] = [
        (cap_load.many_polygons(), 413, "body", "65536 bytes (CRISIS_CAP_MAX_BODY_BYTES)"),
        (
            cap_xml(extra=f"<info>{info}</info>" * 10),
            422,
            "info",
            "11, the limit is 10 (CRISIS_CAP_MAX_INFOS)",
        ),
        (
            cap_xml(area=_area() + more_areas),
            422,
            "area",
            "101, the limit is 100 (CRISIS_CAP_MAX_AREAS)",
        ),
    ]
    for body, status, field, message in refusals:
        r = await _post(api, body)
        assert r.status_code == status, (field, r.text[:300])
        (error,) = r.json()["errors"]
        assert error["field"] == field and message in error["message"], error
    assert await read_topic(broker.bootstrap, topics.EVENTS, count=1, within=3) == []


@pytest.fixture
async def roomy(tmp_path: Path, broker: EmbeddedBroker) -> AsyncIterator[ApiHarness]:
    """The default CAP limits (1 MiB bodies)."""
    async with ingest_api(ingest_settings(tmp_path, broker.bootstrap)) as harness:
        yield harness


async def test_shapes_points_and_elements_past_their_limits_are_422(
    roomy: ApiHarness, broker: EmbeddedBroker
) -> None:
    cases: list[tuple[bytes, str, str]] = [
        (cap_load.many_polygons(), "polygon", "13000, the limit is 1000 (CRISIS_CAP_MAX_SHAPES)"),
        (
            cap_xml(area=_area(points=5001)),
            "info[0].area[0].polygon[0]",
            "5001, the limit is 5000 (CRISIS_CAP_MAX_POLYGON_POINTS)",
        ),
        (  # extensions are ignored, but not without end
            cap_xml(extra='<x:n xmlns:x="urn:x">' + "<x:i/>" * 25_000 + "</x:n>"),
            "body",
            "the limit is 20000",
        ),
    ]
    for body, field, message in cases:
        start = time.perf_counter()
        r = await _post(roomy, body)
        assert r.status_code == 422, (field, r.text[:300])
        (error,) = r.json()["errors"]
        assert error["field"] == field and message in error["message"], error
        assert time.perf_counter() - start < 5, "refused before the document is walked"
    assert await read_topic(broker.bootstrap, topics.EVENTS, count=1, within=3) == []


async def test_a_flood_of_problems_is_answered_with_the_first_hundred(roomy: ApiHarness) -> None:
    r = await _post(roomy, cap_xml(extra="<bogus/>" * 5000))
    assert r.status_code == 422
    errors = r.json()["errors"]
    assert len(errors) == 101 and "further problems not listed" in errors[-1]["message"]
    assert len(r.content) < 20_000


async def test_entity_expansion_is_refused_at_once(roomy: ApiHarness) -> None:
    lol = "".join(f'<!ENTITY l{i} "{(f"&l{i - 1};" if i else "lol") * 10}">' for i in range(10))
    body = (
        f'<?xml version="1.0"?><!DOCTYPE alert [{lol}]>'
        '<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&l9;</identifier>'
        "</alert>"
    ).encode()
    start = time.perf_counter()
    r = await _post(roomy, body)
    assert r.status_code == 400, r.text  # libxml2 stops the amplification, or the DOCTYPE rule
    assert r.json()["errors"][0]["message"].startswith(("not well-formed", "a DOCTYPE"))
    assert time.perf_counter() - start < 2 and len(r.content) < 2000


async def test_an_alert_as_heavy_as_the_limits_allow_reaches_its_units(
    roomy: ApiHarness, broker: EmbeddedBroker
) -> None:
    body = cap_load.within_limits()
    assert len(body) > 900_000
    r = await _post(roomy, body)
    assert r.status_code == 202, r.text[:500]
    assert sorted(r.json()["units"]) == sorted(SOUTH)
    got = await read_topic(broker.bootstrap, topics.EVENTS, count=len(SOUTH))
    assert sorted(v["unit"] for _, v in got) == sorted(SOUTH)


# --- /healthz while heavy work is in flight, against a real server ------------------------

#: Generous: /healthz answers in a few ms when idle; a loop held by CPU work takes seconds.
#: /healthz stays under 200 ms for nine probes in ten; a lone spike from a shared 2-core CI
#: machine is allowed up to 1 s (a loop held by parsing or argon2 stalled it for seconds).
HEALTHZ_P90, HEALTHZ_MAX = 0.2, 1.0


@pytest.mark.slow
@pytest.mark.parametrize("logins", [0, 8])
def test_healthz_answers_during_logins_and_a_heavy_cap_alert(
    tmp_path: Path, database_url: str, broker: EmbeddedBroker, logins: int
) -> None:
    """``logins`` concurrent wrong-password logins and two 1 MB alerts (the finding's, refused
    by its polygon count, and one within the limits, accepted) at once; 0 logins: CAP alone."""
    server = start_board_server(tmp_path, database_url, CRISIS_KAFKA_BOOTSTRAP=broker.bootstrap)
    try:
        token = server.tokens["kdi"]

        def cap(body: bytes) -> Any:
            def post() -> int:
                with httpx.Client(
                    base_url=server.base, timeout=60, headers={"Origin": server.base}
                ) as client:
                    headers = {**cap_load.CAP_HEADERS, "Authorization": f"Bearer {token}"}
                    return client.post("/api/v1/cap", content=body, headers=headers).status_code

            return post

        def login(n: int) -> Any:
            def post() -> int:
                with httpx.Client(
                    base_url=server.base, timeout=60, headers={"Origin": server.base}
                ) as client:
                    form = {"username": f"angriper-{n}", "password": "feil passord", "next": "/"}
                    headers = {"Origin": server.base}
                    return client.post("/login", data=form, headers=headers).status_code

            return post

        # One of each first: what a server does once (imports, first queries) is not measured.
        assert cap(cap_xml(identifier="oppvarming"))() == 202
        login(-1)()
        jobs = [cap(cap_load.many_polygons()), cap(cap_load.within_limits())]
        jobs += [login(n) for n in range(logins)]
        statuses, probes = cap_load.healthz_during(server.base, jobs)
    finally:
        server.stop()
    print(
        f"\n/healthz with {logins} logins and two 1 MB CAP alerts in flight: {len(probes)} "
        f"probes, median {sorted(probes)[len(probes) // 2] * 1000:.1f} ms, "
        f"max {max(probes) * 1000:.1f} ms"
    )
    assert statuses[:2] == [422, 202], server.output()
    assert all(s < 500 for s in statuses[2:]), statuses
    ordered = sorted(probes)
    assert ordered[int(0.9 * (len(ordered) - 1))] < HEALTHZ_P90, ordered[-5:]
    assert ordered[-1] < HEALTHZ_MAX, ordered[-5:]
