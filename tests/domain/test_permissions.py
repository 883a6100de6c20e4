"""The permission table (role × action), every cell walked against the HTTP API.

The expected table is written out here by hand, and the table in docs/api.md is parsed and
compared with it too, so the code, the documentation and the behaviour cannot drift apart.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from crisis.clock import utcnow
from crisis.domain.permissions import PERMISSIONS, Action
from crisis.domain.vocabulary import Role
from tests.conftest import ApiHarness
from tests.notif_sink import Sink
from tests.notifiers.test_notif_dispatcher import FACTS, make_config

UNIT = "agder-froland"
REGION = "sorvest"
EXERCISE = "ovelse-x"

Y, N = True, False
#: role → action → allowed; columns in docs/api.md's order: read, report, write_entry,
#: decision, coercive_decision, escalate, notify, approve, approve_translation, exercise,
#: record_lesson, run_exercise.
EXPECTED: dict[str, dict[str, bool]] = {
    "admin": dict(zip(Action, [Y, Y, Y, Y, Y, Y, Y, Y, Y, Y, Y, Y], strict=True)),
    "operator": dict(zip(Action, [Y, Y, Y, Y, Y, Y, Y, Y, N, Y, Y, N], strict=True)),
    "region": dict(zip(Action, [Y, Y, Y, Y, Y, Y, Y, Y, N, Y, Y, N], strict=True)),
    "kdi": dict(zip(Action, [Y, Y, Y, Y, N, Y, Y, Y, Y, Y, Y, N], strict=True)),
    "communication": dict(zip(Action, [Y, Y, Y, N, N, N, Y, Y, N, N, N, N], strict=True)),
    "ministry": dict(zip(Action, [Y, N, N, N, N, N, N, N, N, N, N, N], strict=True)),
    "exercise-controller": dict(zip(Action, [Y, Y, Y, N, N, N, N, N, N, Y, Y, Y], strict=True)),
}


def test_the_table_in_code_is_the_expected_table() -> None:
    got = {role.value: {a.value: a in PERMISSIONS[role] for a in Action} for role in PERMISSIONS}
    assert got == {r: {a.value: v for a, v in row.items()} for r, row in EXPECTED.items()}
    assert set(PERMISSIONS) == set(Role)


def test_the_documented_table_is_the_expected_table() -> None:
    root = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
    doc = (root / "docs" / "api.md").read_text()
    lines = doc[doc.index("## Permissions") :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| role |"))
    actions = [c.strip().strip("`") for c in lines[start].strip("|").split("|")[1:]]
    assert actions == [a.value for a in Action]
    table: dict[str, dict[str, bool]] = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert len(cells) == len(actions) + 1 and set(cells[1:]) <= {"✓", "–"}, line
        table[cells[0].strip("`")] = {a: cells[i + 1] == "✓" for i, a in enumerate(actions)}
    assert table == {r: {a.value: v for a, v in row.items()} for r, row in EXPECTED.items()}


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    s = await Sink().start()
    yield s
    await s.stop()


class World:
    """Incidents and users for one role's walk: a real one the role may read, an exercise."""

    def __init__(self, api: ApiHarness, admin: dict[str, str]) -> None:
        self.api, self.admin = api, admin
        self.n = 0

    async def open(self, *, exercise: str | None = None, level: str = "unit") -> str:
        body: dict[str, Any] = {"type": "fire", "title": "Brann", "unit": UNIT, "severity": 4}
        if exercise:
            body["exercise"] = exercise
        r = await self.api.client.post("/api/v1/incidents", json=body, headers=self.admin)
        assert r.status_code == 201, r.text
        incident = str(r.json()["id"])
        for to in ("region", "kdi", "jd")[: ("unit", "region", "kdi", "jd").index(level)]:
            r = await self.api.client.post(
                f"/api/v1/incidents/{incident}/escalate",
                json={"to": to, "reason": "øving av tabellen"},
                headers=self.admin,
            )
            assert r.status_code == 201, r.text
        return incident

    async def update(self, incident: str) -> str:
        r = await self.api.client.post(
            "/api/v1/notifications/updates",
            json={
                "incident_id": incident,
                "groups": ["families"],
                "facts": FACTS,
                "next_update_at": (utcnow() + timedelta(hours=1)).isoformat(),
            },
            headers=self.admin,
        )
        assert r.status_code == 201, r.text
        return str(r.json()["id"])


Call = Callable[[World, dict[str, str], bool], Awaitable[httpx.Response]]
COERCIVE = {
    "kind": "decision",
    "text": "Innelåsing",
    "measure": "innelasing",
    "legal_basis": "straffegjennomføringsloven § 37",
    "proportionality": "nødvendig for å hindre skade",
    "alternatives": "samtale vurdert",
}


async def _target(w: World, drill: bool, level: str = "jd") -> str:
    return await w.open(exercise=EXERCISE if drill else None, level=level)


async def _read(w: World, h: dict[str, str], drill: bool) -> httpx.Response:
    return await w.api.client.get(
        f"/api/v1/incidents/{await _target(w, drill)}/timeline", headers=h
    )


async def _report(w: World, h: dict[str, str], drill: bool) -> httpx.Response:
    body = {"unit": UNIT, "category": "brann", "place": "A", "what": "røyk"}
    if drill:
        body["exercise"] = EXERCISE
    return await w.api.client.post("/api/v1/reports", json=body, headers=h)


def _entry(body: dict[str, Any]) -> Call:
    async def call(w: World, h: dict[str, str], drill: bool) -> httpx.Response:
        incident = await _target(w, drill)
        return await w.api.client.post(
            f"/api/v1/incidents/{incident}/entries", json=body, headers=h
        )

    return call


async def _escalate(w: World, h: dict[str, str], drill: bool) -> httpx.Response:
    incident = await _target(w, drill, level="unit")
    return await w.api.client.post(
        f"/api/v1/incidents/{incident}/escalate", json={"to": "region", "reason": "r"}, headers=h
    )


async def _notify(w: World, h: dict[str, str], drill: bool) -> httpx.Response:
    body = {
        "incident_id": await _target(w, drill),
        "groups": ["staff"],
        "facts": FACTS,
        "next_update_at": (utcnow() + timedelta(hours=1)).isoformat(),
    }
    return await w.api.client.post("/api/v1/notifications/updates", json=body, headers=h)


async def _approve(w: World, h: dict[str, str], drill: bool) -> httpx.Response:
    update = await w.update(await _target(w, drill))
    return await w.api.client.post(f"/api/v1/notifications/updates/{update}/approve", headers=h)


async def _approve_translation(w: World, h: dict[str, str], drill: bool) -> httpx.Response:
    body = {"template": "update", "language": "so"}
    return await w.api.client.post(
        "/api/v1/notifications/translations/approve", json=body, headers=h
    )


async def _exercise(w: World, h: dict[str, str], drill: bool) -> httpx.Response:
    body = {"type": "fire", "title": "Øvelse", "unit": UNIT, "severity": 3, "exercise": EXERCISE}
    return await w.api.client.post("/api/v1/incidents", json=body, headers=h)


async def _record_lesson(w: World, h: dict[str, str], drill: bool) -> httpx.Response:
    incident = await _target(w, drill)
    return await w.api.client.post(
        f"/api/v1/incidents/{incident}/lessons/findings",
        json={"finding": "Varslingslisten var utdatert"},
        headers=h,
    )


TINY_SCENARIO = """version: 1
id: tilgang
title: Tilgang
title_en: Access
units: [agder-froland]
injects:
  - {id: les, at: 0s, type: text, text: "Les opp"}
"""


async def _run_exercise(w: World, h: dict[str, str], drill: bool) -> httpx.Response:
    return await w.api.client.post(
        "/api/v1/exercises",
        json={"scenario": TINY_SCENARIO, "speed": 10},
        headers=h,
    )


CALLS: dict[Action, Call] = {
    Action.READ: _read,
    Action.REPORT: _report,
    Action.WRITE_ENTRY: _entry({"kind": "observation", "text": "Røyk sett"}),
    Action.DECISION: _entry({"kind": "decision", "text": "Evakuerer avdeling A"}),
    Action.COERCIVE_DECISION: _entry(COERCIVE),
    Action.ESCALATE: _escalate,
    Action.NOTIFY: _notify,
    Action.APPROVE: _approve,
    Action.APPROVE_TRANSLATION: _approve_translation,
    Action.EXERCISE: _exercise,
    Action.RECORD_LESSON: _record_lesson,
    Action.RUN_EXERCISE: _run_exercise,
}
#: What an allowed call answers (reports: 503 here, no Kafka: refused for another reason).
ALLOWED_STATUS = {Action.READ: {200}, Action.APPROVE: {200}, Action.REPORT: {202, 503}}


@pytest.mark.parametrize("role", list(EXPECTED))
async def test_every_cell_of_the_table_holds_at_the_api(
    api: ApiHarness, sink: Sink, role: str
) -> None:
    api.app.state.notify_config = make_config(sink)
    world = World(api, await api.user("root", "admin"))
    headers = await api.user("u", role, unit=UNIT, region=REGION)
    drill = role == Role.EXERCISE_CONTROLLER  # its scope is exercises only
    got: dict[str, int] = {}
    for action, call in CALLS.items():
        got[action.value] = (await call(world, headers, drill)).status_code
    wrong = {
        a: status
        for a, status in got.items()
        if (status in ALLOWED_STATUS.get(Action(a), {201})) != EXPECTED[role][Action(a)]
        or (not EXPECTED[role][Action(a)] and status != 403)
    }
    assert not wrong, f"{role}: {got}"
