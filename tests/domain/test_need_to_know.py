"""Need-to-know everywhere (issue 13), through the public HTTP API, the board and the CLI.

Every personal-reference field (``crisis.privacy.PERSONAL_FIELDS``), top-level or nested in
an event, is masked for communication staff, the ministry and exercise controllers in the
timeline, the entries answer, the dead-letter view, the board pages and the websocket; every
unmasked read writes one ``data_access`` row with the role's need, a masked one none; the
ministry reads real incidents escalated to it, without sitrep drafts; admins read the audit.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select

from crisis.accounts.models import User
from crisis.domain.vocabulary import Role
from crisis.log import privacy
from crisis.log.models import DataAccess
from crisis.settings import Settings
from crisis.store.db import make_engine, make_sessionmaker
from tests.boardserver import BoardServer, run_async, start_board_server
from tests.conftest import ApiHarness

FIELDS = privacy.PERSONAL_FIELDS
MASK = privacy.MASK
PREFIX = "PERSON-"  # every reference value below starts so; a masked output has none
REAL = {"type": "fire", "title": "Brann i verksted", "unit": "agder-froland", "severity": 4}
USERS: dict[str, tuple[str, dict[str, str]]] = {
    "op": ("operator", {"unit": "agder-froland"}),
    "sorvest": ("region", {"region": "sorvest"}),
    "kdi": ("kdi", {}),
    "root": ("admin", {}),
    "komm": ("communication", {}),
    "jd": ("ministry", {}),
    "ovl": ("exercise-controller", {}),
}
SEES = ("op", "sorvest", "kdi", "root")
MASKED = ("komm", "jd", "ovl")


def _value(field: str, where: str) -> Any:
    base = f"{PREFIX}{field}-{where}"
    return [f"{base}-1", f"{base}-2"] if field.endswith("_refs") else base


def _leaves(value: Any) -> list[str]:
    return list(value) if isinstance(value, list) else [value]


def _masked_as(value: Any) -> Any:
    return [MASK] if isinstance(value, list) else MASK


def _all_fields(where: str) -> dict[str, Any]:
    """Every personal field, top-level, nested in the source event and deeper in a list."""
    return {
        **{f: _value(f, f"{where}-top") for f in FIELDS},
        "event": {
            "type": "no.kriminalomsorgen.sensor.ek_tamper",
            "data": {f: _value(f, f"{where}-event") for f in FIELDS},
        },
        "event_data": {"items": [{f: _value(f, f"{where}-deep") for f in FIELDS}]},
    }


def _values_in(data: Any) -> set[str]:
    """Every reference value written by these tests, wherever it sits in ``data``."""
    if isinstance(data, dict):
        return {v for item in data.values() for v in _values_in(item)}
    if isinstance(data, list):
        return {v for item in data for v in _values_in(item)}
    return {data} if isinstance(data, str) and data.startswith(PREFIX) else set()


async def _rows(api: ApiHarness) -> list[DataAccess]:
    async with api.app.state.sessions() as session:
        stmt = select(DataAccess).order_by(col(DataAccess.id))
        return list((await session.exec(stmt)).all())


class World:
    """Users with tokens, a real incident escalated to JD and an exercise incident."""

    def __init__(self, api: ApiHarness) -> None:
        self.api = api
        self.h: dict[str, dict[str, str]] = {}
        self.real = ""
        self.exercise = ""

    async def build(self) -> World:
        for name, (role, kw) in USERS.items():
            self.h[name] = await self.api.user(name, role, **kw)
        self.real = await self.open("op", escalate_to_jd=True)
        self.exercise = await self.open("root", exercise="ovelse-ntk")
        return self

    async def open(self, who: str, *, escalate_to_jd: bool = False, **over: Any) -> str:
        r = await self.api.client.post(
            "/api/v1/incidents", json={**REAL, **over}, headers=self.h[who]
        )
        assert r.status_code == 201, r.text
        iid = str(r.json()["id"])
        if escalate_to_jd:
            for level in ("region", "kdi", "jd"):
                r = await self.api.client.post(
                    f"/api/v1/incidents/{iid}/escalate",
                    json={"to": level, "reason": "alvorlig hendelse"},
                    headers=self.h[who],
                )
                assert r.status_code == 201, r.text
        return iid

    def incident_for(self, who: str) -> str:
        return self.exercise if who == "ovl" else self.real

    def writer_for(self, iid: str) -> str:
        return "root" if iid == self.exercise else "op"

    async def note(self, iid: str, who: str | None = None, **data: Any) -> httpx.Response:
        return await self.api.client.post(
            f"/api/v1/incidents/{iid}/entries",
            json={"kind": "observation", "text": "Innsatt flyttet til annen avdeling", **data},
            headers=self.h[who or self.writer_for(iid)],
        )

    async def timeline(self, iid: str, who: str) -> httpx.Response:
        return await self.api.client.get(f"/api/v1/incidents/{iid}/timeline", headers=self.h[who])


# --- the rule itself (no HTTP) -------------------------------------------------------------

_KEYS = st.text("abcdefgh_", min_size=1, max_size=8).filter(lambda k: k not in FIELDS)
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5))
_REFS = st.one_of(
    st.text(min_size=1, max_size=6).map(lambda s: PREFIX + s),
    st.lists(st.text(min_size=1, max_size=6).map(lambda s: PREFIX + s), min_size=1, max_size=3),
)
_DATA = st.recursive(
    st.dictionaries(st.one_of(_KEYS, st.sampled_from(FIELDS)), _SCALARS, max_size=3),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(_KEYS, inner, max_size=3),
        st.dictionaries(st.sampled_from(FIELDS), _REFS, min_size=1, max_size=2),
    ),
    max_leaves=20,
).filter(lambda d: isinstance(d, dict))


@hsettings(max_examples=200, deadline=None)
@given(data=_DATA, role=st.sampled_from(list(Role)))
def test_masking_reaches_every_depth_and_only_personal_fields(
    data: dict[str, Any], role: Role
) -> None:
    user = User(name="u", role=role.value, password_hash="")
    shown, refs = privacy.for_viewer(user, data)
    if role in privacy.NEED_TO_KNOW:
        assert shown == data and refs == privacy.refs_in(data)
        return
    assert refs == [] and not _values_in(shown)
    assert privacy.refs_in(shown) in ([], [MASK] * len(privacy.refs_in(shown)))
    assert privacy.masked(shown) == shown  # idempotent: nothing left to mask
    # nothing but personal fields changed
    strip = lambda d: json.dumps(_without_personal(d), sort_keys=True, default=str)  # noqa: E731
    assert strip(shown) == strip(data)


def _without_personal(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_personal(v) for k, v in value.items() if k not in FIELDS}
    if isinstance(value, list):
        return [_without_personal(v) for v in value]
    return value


def test_raw_events_are_masked_and_unreadable_text_naming_a_person_is_withheld() -> None:
    komm = User(name="k", role="communication", password_hash="")
    op = User(name="o", role="operator", password_hash="")
    raw = json.dumps({"data": {"event": {"data": {"client_ref": PREFIX + "1"}}}})
    shown, refs = privacy.raw_for_viewer(komm, raw)
    assert PREFIX not in shown and json.loads(shown)["data"]["event"]["data"]["client_ref"] == MASK
    assert refs == [] and privacy.raw_for_viewer(op, raw) == (raw, [PREFIX + "1"])
    broken = '{"data": {"inmate_ref": "' + PREFIX + '2"'
    assert privacy.raw_for_viewer(komm, broken) == (MASK, [])
    assert privacy.raw_for_viewer(op, broken)[0] == broken
    assert privacy.raw_for_viewer(komm, "\xff garbage") == ("\xff garbage", [])


# --- the timeline API: field × role × nesting ----------------------------------------------

_PATH = st.lists(
    st.one_of(st.sampled_from(["event", "data", "event_data", "items", "detail"]), st.just(0)),
    max_size=4,
)


def _nest(path: list[str | int], leaf: dict[str, Any]) -> dict[str, Any]:
    value: Any = leaf
    for step in reversed(path):
        value = [value] if step == 0 else {step: value}
    return value if isinstance(value, dict) else {"items": value}


def _at(data: Any, path: list[str | int]) -> Any:
    if path and path[0] == 0 and not isinstance(data, list):
        data = data["items"]
    for step in path:
        data = data[step] if step != 0 else data[0]
    return data


def test_the_timeline_masks_every_field_at_any_depth_for_roles_without_need(
    settings: Settings,
) -> None:
    from web.app import create_app

    with asyncio.Runner() as runner:
        app = create_app(settings)
        lifespan = app.router.lifespan_context(app)
        runner.run(lifespan.__aenter__())
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
        api = ApiHarness(app, client)
        try:
            world = runner.run(World(api).build())
            written: dict[str, set[str]] = {world.real: set(), world.exercise: set()}
            counter = iter(range(10_000))

            @hsettings(
                max_examples=40,
                deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture],
            )
            @given(
                field=st.sampled_from(FIELDS),
                who=st.sampled_from(list(USERS)),
                path=_PATH,
            )
            def check(field: str, who: str, path: list[str | int]) -> None:
                runner.run(_one_read(world, written, next(counter), field, who, path))

            check()
        finally:
            runner.run(client.aclose())
            runner.run(lifespan.__aexit__(None, None, None))


async def _one_read(
    world: World,
    written: dict[str, set[str]],
    n: int,
    field: str,
    who: str,
    path: list[str | int],
) -> None:
    iid = world.incident_for(who)
    value = _value(field, f"h{n}")
    data = _nest(path, {field: value})
    r = await world.note(iid, **data)
    assert r.status_code == 201, r.text
    entry_id = r.json()["id"]
    written[iid] |= set(_leaves(value))
    before = await _rows(world.api)
    got = await world.timeline(iid, who)
    assert got.status_code == 200, got.text
    mine = next(e for e in got.json() if e["id"] == entry_id)
    after = await _rows(world.api)
    if who in MASKED:
        assert PREFIX not in got.text
        assert _at(mine["data"], path)[field] == _masked_as(value)
        assert len(after) == len(before), "a masked read is not an access"
        return
    assert _at(mine["data"], path)[field] == value
    assert len(after) == len(before) + 1, "one row per unmasked read"
    row = after[-1]
    role = USERS[who][0]
    assert (row.actor, row.role, row.channel, row.incident_id) == (f"user:{who}", role, "api", iid)
    assert row.need == privacy.NEED[role] and row.need
    assert set(row.inmate_refs) == written[iid] and entry_id in row.entry_ids


async def test_every_field_is_masked_top_level_and_nested_and_hashes_stay(api: ApiHarness) -> None:
    world = await World(api).build()
    expected: set[str] = set()
    for iid in (world.real, world.exercise):
        for field in FIELDS:
            data = {
                field: _value(field, f"{iid}-top"),
                "event": {"data": {field: _value(field, f"{iid}-event")}},
                "event_data": {"items": [{field: _value(field, f"{iid}-deep")}]},
            }
            assert (await world.note(iid, **data)).status_code == 201
            expected |= _values_in(data) if iid == world.real else set()
    reference = (await world.timeline(world.real, "op")).json()
    hashes = {e["id"]: (e["hash"], e["prev_hash"]) for e in reference}
    baseline = len(await _rows(api))  # op's reference read: one row
    assert baseline == 1
    for who in MASKED:
        got = await world.timeline(world.incident_for(who), who)
        assert got.status_code == 200, got.text
        assert PREFIX not in got.text
        for entry in got.json():
            for field in FIELDS:
                if field in entry["data"]:
                    masked = _masked_as(_value(field, "x"))
                    assert entry["data"][field] == masked
                    assert entry["data"]["event"]["data"][field] == masked
                    assert entry["data"]["event_data"]["items"][0][field] == masked
            if who != "ovl":
                assert (entry["hash"], entry["prev_hash"]) == hashes[entry["id"]]
    assert len(await _rows(api)) == baseline, "a masked read is not an access"
    for who in SEES:
        got = (await world.timeline(world.real, who)).json()
        assert _values_in([e["data"] for e in got]) == expected
    rows = (await _rows(api))[baseline:]
    assert [(r.actor, r.need, r.channel) for r in rows] == [
        (f"user:{who}", privacy.NEED[USERS[who][0]], "api") for who in SEES
    ]
    assert all(set(r.inmate_refs) == expected and len(r.entry_ids) == len(FIELDS) for r in rows)


async def test_the_entries_answer_is_masked_like_any_read(api: ApiHarness) -> None:
    world = await World(api).build()
    for who, iid in (("komm", world.real), ("ovl", world.exercise)):
        r = await world.note(iid, who, **_all_fields(who))
        assert r.status_code == 201, r.text
        assert PREFIX not in r.text
        assert r.json()["data"]["inmate_refs"] == [MASK]
        assert r.json()["data"]["event"]["data"]["client_ref"] == MASK
    r = await world.note(world.real, "op", **_all_fields("op"))
    assert r.status_code == 201
    assert _values_in(r.json()["data"]) == _values_in(_all_fields("op"))
    # the writer's own references echoed are not a read: the entry names its actor
    assert await _rows(api) == []


# --- the dead-letter view ----------------------------------------------------------------


async def test_dead_letters_only_for_roles_with_need_and_unmasked_reads_audited(
    api: ApiHarness, settings: Settings
) -> None:
    from streams.pipeline import Record
    from streams.worker import build_pipeline

    world = await World(api).build()
    refused = {
        "specversion": "1.0",
        "id": "dl-1",
        "source": "/units/agder-froland/sensors/d1",
        "type": "no.kriminalomsorgen.sensor.door_forced",
        "unit": "agder-froland",
        "data": {"door": "D1", **_all_fields("dlq")},  # unknown fields: refused
    }
    pipeline, _ = build_pipeline(settings, engine=api.app.state.engine)
    await pipeline.process([Record(json.dumps(refused).encode())])
    for who in MASKED:  # dead letters are operational data (issue 15): not theirs at all
        got = await api.client.get("/api/v1/events/dlq", headers=world.h[who])
        assert got.status_code == 403 and PREFIX not in got.text
    assert await _rows(api) == []
    for who in ("op", "kdi", "root"):
        got = await api.client.get("/api/v1/events/dlq", headers=world.h[who])
        assert got.status_code == 200 and len(got.json()) == 1
        assert json.loads(got.json()[0]["raw"]) == refused
    rows = await _rows(api)
    assert [(r.actor, r.channel, r.incident_id, r.need) for r in rows] == [
        (f"user:{who}", "dlq", "", privacy.NEED[USERS[who][0]]) for who in ("op", "kdi", "root")
    ]
    letter = got.json()[0]
    assert all(r.entry_ids == [letter["id"]] for r in rows)
    assert all(set(r.inmate_refs) == _values_in(refused) for r in rows)


# --- the ministry -------------------------------------------------------------------------


async def test_the_ministry_reads_real_incidents_escalated_to_it_without_drafts(
    api: ApiHarness,
) -> None:
    world = await World(api).build()
    jd, op = world.h["jd"], world.h["op"]
    unit_level = await world.open("op")
    exercise_at_jd = await world.open("root", escalate_to_jd=True, exercise="ovelse-jd")
    for iid in (unit_level, exercise_at_jd, world.exercise):
        assert (await world.timeline(iid, "jd")).status_code in (403, 404)
        assert (await api.client.get(f"/api/v1/incidents/{iid}", headers=jd)).status_code == 403
    listed = (await api.client.get("/api/v1/incidents", headers=jd)).json()
    assert [i["id"] for i in listed] == [world.real]

    url = f"/api/v1/incidents/{world.real}/sitreps"
    approved = (
        await api.client.post(
            url,
            json={"situation": "GODKJENT tekst", "next_update_at": "2099-01-01T10:00:00Z"},
            headers=op,
        )
    ).json()
    r = await api.client.post(
        f"/api/v1/sitreps/{approved['id']}/approve", json={"version": 1}, headers=world.h["kdi"]
    )
    assert r.status_code == 200, r.text
    draft = await api.client.post(url, json={"situation": "UTKAST hemmelig"}, headers=op)
    assert draft.status_code == 201, draft.text
    assert (await world.note(world.real, inmate_ref=PREFIX + "jd")).status_code == 201

    got = await world.timeline(world.real, "jd")
    assert got.status_code == 200
    assert "UTKAST" not in got.text and PREFIX not in got.text
    reports = [e for e in got.json() if e["kind"] == "situation_report"]
    assert [(e["data"]["sitrep_id"], e["data"]["action"]) for e in reports] == [
        (approved["id"], "approved")
    ]
    assert any(e["kind"] == "escalation" for e in got.json())
    full = (await world.timeline(world.real, "kdi")).json()
    assert sum(e["kind"] == "situation_report" for e in full) == 3  # two versions, one approval
    # the approved text itself is the sitrep endpoint's to give
    seen = await api.client.get(f"/api/v1/sitreps/{approved['id']}", headers=jd)
    assert seen.status_code == 200 and seen.json()["current"]["situation"] == "GODKJENT tekst"
    drafted = await api.client.get(f"/api/v1/sitreps/{draft.json()['id']}", headers=jd)
    assert drafted.status_code == 404


# --- the audit: API and CLI ---------------------------------------------------------------


async def test_the_access_audit_is_for_admins_with_filters_and_paging(api: ApiHarness) -> None:
    world = await World(api).build()
    assert (await world.note(world.real, inmate_ref=PREFIX + "a")).status_code == 201
    other = await world.open("op")
    assert (await world.note(other, client_ref=PREFIX + "b")).status_code == 201
    for who, iid in (("op", world.real), ("kdi", world.real), ("op", other), ("komm", other)):
        assert (await world.timeline(iid, who)).status_code == 200
    assert (await api.client.get("/api/v1/audit/access")).status_code == 401
    for who in ("op", "sorvest", "kdi", "komm", "jd", "ovl"):
        r = await api.client.get("/api/v1/audit/access", headers=world.h[who])
        assert r.status_code == 403, who
    root = world.h["root"]
    body = (await api.client.get("/api/v1/audit/access", headers=root)).json()
    assert [(a["actor"], a["incident_id"], a["refs"]) for a in body] == [
        ("user:op", other, [PREFIX + "b"]),
        ("user:kdi", world.real, [PREFIX + "a"]),
        ("user:op", world.real, [PREFIX + "a"]),
    ]
    assert body[0]["need"] == privacy.NEED[Role.OPERATOR] and body[0]["channel"] == "api"
    assert body[0]["role"] == "operator" and body[0]["entry_ids"]

    async def get(**params: Any) -> list[Any]:
        r = await api.client.get("/api/v1/audit/access", params=params, headers=root)
        assert r.status_code == 200, r.text
        return [a["id"] for a in r.json()]

    ids = [a["id"] for a in body]
    assert await get(actor="op") == [ids[0], ids[2]]
    assert await get(actor="user:kdi") == [ids[1]]
    assert await get(incident_id=world.real) == ids[1:]
    assert await get(limit=1) == ids[:1]
    assert await get(limit=1, before=ids[0]) == [ids[1]]
    now = datetime.now(UTC)
    assert await get(since=(now + timedelta(minutes=5)).isoformat()) == []
    assert await get(since=(now - timedelta(minutes=5)).isoformat()) == ids
    assert await get(until=(now - timedelta(minutes=5)).isoformat()) == []
    too_many = await api.client.get("/api/v1/audit/access", params={"limit": 1001}, headers=root)
    assert too_many.status_code == 422


async def test_the_cli_prints_the_access_audit_in_oslo_time(
    engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    async with make_sessionmaker(engine)() as session:
        for name, role, incident, at in (
            ("kari", "operator", "inc-1", datetime(2026, 1, 15, 9, 0, tzinfo=UTC)),
            ("kdi1", "kdi", "inc-2", datetime(2026, 7, 1, 9, 30, tzinfo=UTC)),
        ):
            row = await privacy.record_access(
                session,
                user=User(name=name, role=role, password_hash=""),
                incident_id=incident,
                entry_ids=[3, 4],
                refs=[PREFIX + name],
                channel="api",
            )
            assert row is not None
            row.at = at
        await session.commit()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRISIS_")}
    env.update(CRISIS_DATA_DIR=str(tmp_path / "var"), CRISIS_DATABASE_URL=database_url)

    def run(*args: str) -> list[str]:
        done = subprocess.run(
            [sys.executable, "-m", "crisis.cli", "audit", "access", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()

    lines = run()
    assert len(lines) == 2
    assert lines[0].startswith("2026-07-01 11:30:00 CEST  user:kdi1 (kdi)  api  incident inc-2")
    assert lines[1].startswith("2026-01-15 10:00:00 CET  user:kari (operator)")
    assert "entries 3,4" in lines[1] and PREFIX + "kari" in lines[1]
    assert privacy.NEED[Role.OPERATOR] in lines[1]
    assert run("--actor", "kari") == lines[1:]
    assert run("--incident", "inc-2") == lines[:1]
    assert run("--limit", "1") == lines[:1]


# --- the board: pages and websocket --------------------------------------------------------


@asynccontextmanager
async def _browser(api: ApiHarness, name: str) -> AsyncIterator[httpx.AsyncClient]:
    async with api.login(name) as client:
        yield client


async def test_board_pages_mask_every_field_and_audit_each_unmasked_view(
    api: ApiHarness,
) -> None:
    world = await World(api).build()
    for iid in (world.real, world.exercise):
        assert (await world.note(iid, **_all_fields(iid))).status_code == 201
    for who in MASKED:
        async with _browser(api, who) as browser:
            page = await browser.get(f"/incidents/{world.incident_for(who)}")
            if who == "jd":  # the board shows the ministry approved reports only
                assert page.status_code == 403
                continue
            assert page.status_code == 200
            assert PREFIX not in page.text and "skjermet" in page.text
    assert await _rows(api) == []
    for who in SEES:
        async with _browser(api, who) as browser:
            page = await browser.get(f"/incidents/{world.real}")
            assert page.status_code == 200
            for value in _values_in(_all_fields(world.real)):
                assert value in page.text
    rows = await _rows(api)
    assert [(r.actor, r.channel, r.incident_id, r.need) for r in rows] == [
        (f"user:{who}", "page", world.real, privacy.NEED[USERS[who][0]]) for who in SEES
    ]
    assert all(set(r.inmate_refs) == _values_in(_all_fields(world.real)) for r in rows)


BOARD_USERS = [(name, role, kw.get("unit"), kw.get("region")) for name, (role, kw) in USERS.items()]


@pytest.fixture
def board(tmp_path: Path, database_url: str) -> Iterator[BoardServer]:
    server = start_board_server(tmp_path, database_url, BOARD_USERS)
    try:
        yield server
    finally:
        server.stop()


def test_the_websocket_masks_every_field_and_audits_unmasked_deliveries(
    board: BoardServer, database_url: str
) -> None:
    from websockets.sync.client import connect

    def ws(name: str) -> Any:
        url = board.base.replace("http", "ws") + f"/ws/board?token={board.tokens[name]}"
        return connect(url, open_timeout=15)

    def until_text(conn: Any, text: str) -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = []
        for _ in range(200):
            got.append(json.loads(conn.recv(timeout=20)))
            if got[-1].get("entry", {}).get("text") == text:
                return got
        raise AssertionError(got)

    def post(path: str, who: str, body: dict[str, Any]) -> dict[str, Any]:
        r = board.api("POST", path, who, json=body)
        assert r.status_code == 201, r.text
        return dict(r.json())

    real = post("/api/v1/incidents", "op", REAL)["id"]
    exercise = post("/api/v1/incidents", "root", {**REAL, "exercise": "ovelse-ws"})["id"]
    with ws("op") as op, ws("komm") as komm, ws("ovl") as ovl, ws("kdi") as kdi:
        for conn in (op, komm, ovl, kdi):
            assert json.loads(conn.recv(timeout=20))["type"] == "hello"
        note = {"kind": "observation", "text": "Personer nevnt", **_all_fields("ws")}
        post(f"/api/v1/incidents/{real}/entries", "op", note)
        post(f"/api/v1/incidents/{exercise}/entries", "root", {**note, "text": "Øvelse: personer"})
        for conn in (op, kdi):
            mine = until_text(conn, "Personer nevnt")[-1]
            assert _values_in(mine["entry"]["data"]) == _values_in(_all_fields("ws"))
        for conn, text in ((komm, "Personer nevnt"), (ovl, "Øvelse: personer")):
            theirs = until_text(conn, text)
            assert PREFIX not in json.dumps(theirs)
            assert theirs[-1]["entry"]["data"]["event"]["data"]["client_ref"] == MASK

    async def rows() -> list[DataAccess]:
        engine = make_engine(database_url)
        try:
            async with make_sessionmaker(engine)() as session:
                return list((await session.exec(select(DataAccess))).all())
        finally:
            await engine.dispose()

    # a row is written just after its message is sent: give the server a moment
    deadline = time.monotonic() + 15
    while True:
        got = [r for r in run_async(rows) if r.channel == "websocket"]
        seen = {(r.actor, r.incident_id) for r in got}
        if {("user:op", real), ("user:kdi", real)} <= seen or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert {("user:op", real), ("user:kdi", real)} <= seen
    assert {r.actor for r in got} == {"user:op", "user:kdi"}  # komm and ovl: masked, no row
    assert all(r.need == privacy.NEED[r.role] and r.need for r in got)
    assert all(set(r.inmate_refs) == _values_in(_all_fields("ws")) for r in got)
