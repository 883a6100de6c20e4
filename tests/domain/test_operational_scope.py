"""Operational data within the reader's units (issue 15): dead letters and recipient lists.

One rule (``crisis.privacy.has_operational_duty``): operators, regions, KDI and admins read
dead letters and see who a message went to, each within its scope of units; communication
staff, the ministry and exercise controllers read no dead letters (403) and see each message
without its recipients. Walked here over every role and every path that carries them: the
timeline, the notifications API (read and write answers), the board's pages, the dead-letter
view and the websocket. Every recipient id starts with ``rcpt-``, so a masked answer has none.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from crisis.clock import utcnow
from crisis.settings import Settings
from notifiers import logbook
from notifiers.config import parse_notify_config
from notifiers.dispatcher import Dispatcher
from streams.pipeline import Record
from streams.worker import build_pipeline
from tests.boardserver import BoardServer, start_board_server
from tests.conftest import ApiHarness
from tests.domain.test_need_to_know import _browser
from tests.notif_sink import Sink
from tests.notifiers.test_notif_dispatcher import FACTS
from tests.streams.test_dlq import _event as dead_event

FROLAND, RINGERIKE = "agder-froland", "ringerike"
#: name → (role, scope); the expected outcomes below are written out by hand per name.
USERS: dict[str, tuple[str, dict[str, str]]] = {
    "op-f": ("operator", {"unit": FROLAND}),
    "op-r": ("operator", {"unit": RINGERIKE}),
    "reg-sorvest": ("region", {"region": "sorvest"}),  # agder-froland's region
    "reg-sor": ("region", {"region": "sor"}),  # ringerike's region
    "kdi": ("kdi", {}),
    "root": ("admin", {}),
    "komm": ("communication", {}),
    "jd": ("ministry", {}),
    "ovl": ("exercise-controller", {}),
}
DUTY = {"op-f", "op-r", "reg-sorvest", "reg-sor", "kdi", "root"}
#: Which of the incidents F (agder-froland, escalated to JD), R (ringerike) and X (an
#: exercise at agder-froland) each user may read at all.
VISIBLE = {
    "op-f": {"F", "X"},
    "op-r": {"R"},
    "reg-sorvest": {"F", "X"},
    "reg-sor": {"R"},
    "kdi": {"F", "R", "X"},
    "root": {"F", "R", "X"},
    "komm": {"F", "R", "X"},
    "jd": {"F"},
    "ovl": {"X"},
}
#: The dead letters each user reads (None: the one with no readable unit); None → 403.
DEAD_LETTERS: dict[str, set[str | None] | None] = {
    "op-f": {FROLAND},
    "op-r": {RINGERIKE},
    "reg-sorvest": {FROLAND},
    "reg-sor": {RINGERIKE},
    "kdi": {FROLAND, RINGERIKE, None},
    "root": {FROLAND, RINGERIKE, None},
    "komm": None,
    "jd": None,
    "ovl": None,
}
#: Who may ask for a message (NOTIFY) and approve one (APPROVE), among those who see F.
NOTIFIERS = {"op-f", "reg-sorvest", "kdi", "root", "komm"}

CONFIG = """
version: 1
people:
  - {id: rcpt-froland-stab-1, name: Stab 1, contacts: [{channel: webhook, url: "json://127.0.0.1:9/a"}]}
  - {id: rcpt-froland-stab-2, name: Stab 2, contacts: [{channel: webhook, url: "json://127.0.0.1:9/b"}]}
  - {id: rcpt-froland-leder, name: Leder, contacts: [{channel: webhook, url: "json://127.0.0.1:9/c"}]}
  - {id: rcpt-froland-leder-2, name: Leder 2, contacts: [{channel: webhook, url: "json://127.0.0.1:9/d"}]}
  - {id: rcpt-ringerike-stab, name: Stab R, contacts: [{channel: webhook, url: "json://127.0.0.1:9/e"}]}
  - {id: rcpt-departementet, name: JD, contacts: [{channel: webhook, url: "json://127.0.0.1:9/f"}]}
groups:
  - {id: g-f-staff, kind: staff, unit: agder-froland, members: [rcpt-froland-stab-1, rcpt-froland-stab-2]}
  - id: g-f-leaders
    kind: leaders
    unit: agder-froland
    members: [rcpt-froland-leder]
    ack_required: true
    escalation: [rcpt-froland-leder, rcpt-froland-leder-2]
  - {id: g-r-staff, kind: staff, unit: ringerike, members: [rcpt-ringerike-stab]}
  - {id: g-jd, kind: ministry, members: [rcpt-departementet]}
"""  # noqa: E501

NAMES = {
    "F": {
        "rcpt-froland-stab-1",
        "rcpt-froland-stab-2",
        "rcpt-froland-leder",
        "rcpt-froland-leder-2",
        "rcpt-departementet",
    },
    "R": {"rcpt-ringerike-stab"},
    "X": {"rcpt-froland-stab-2"},
}


def names(text: str) -> set[str]:
    return set(re.findall(r"rcpt-[a-z0-9-]*[a-z0-9]", text))


def receipts(update_id: str) -> dict[str, list[logbook.Receipt]]:
    """Delivery receipts as the notifiers write them: an alarm not confirmed in time and
    escalated, the next person's confirmation; an exercise message blocked."""
    timed_out = {
        "update_id": update_id,
        "group": "leaders",
        "recipient": "rcpt-froland-leder",
        "status": "timed_out",
        "escalated_to": "rcpt-froland-leder-2",
        "error": "ikke bekreftet innen fristen / not acknowledged",
    }
    acked = {
        "update_id": update_id,
        "group": "leaders",
        "recipient": "rcpt-froland-leder-2",
        "status": "acknowledged",
        "escalated_from": "rcpt-froland-leder",
        "acknowledged_by": "recipient:rcpt-froland-leder-2",
    }
    blocked = {
        "update_id": "ovelse-1",
        "group": "staff",
        "recipient": "rcpt-froland-stab-2",
        "status": "blocked",
        "error": "exercise ovelse-x: rcpt-froland-stab-2 is not a participant",
    }
    return {
        "F": [
            logbook.Receipt("", "Varsel timed_out: leaders/rcpt-froland-leder", timed_out),
            logbook.Receipt("", "Varsel acknowledged: leaders/rcpt-froland-leder-2", acked),
        ],
        "X": [
            logbook.Receipt(
                "",
                "Varsel blocked: staff/rcpt-froland-stab-2 (exercise ovelse-x: "
                "rcpt-froland-stab-2 is not a participant)",
                blocked,
            )
        ],
    }


def check_names(who: str, what: str, text: str, expected: set[str]) -> None:
    """Duty: the recipients are shown (all of ``expected``); otherwise none at all."""
    if who in DUTY:
        assert expected <= names(text), (who, what, expected - names(text))
    else:
        assert names(text) == set(), (who, what, names(text))


class World:
    """Users, the three incidents with updates and receipts, dead letters in two units."""

    def __init__(self, api: ApiHarness) -> None:
        self.api = api
        self.h: dict[str, dict[str, str]] = {}
        self.ids: dict[str, str] = {}
        self.updates: dict[str, dict[str, set[str]]] = {}

    async def build(self, settings: Settings, sink: Sink | None = None) -> World:
        text = CONFIG.replace("json://127.0.0.1:9/", sink.url("/")) if sink else CONFIG
        self.api.app.state.notify_config = parse_notify_config(text, "scope.yaml")
        for name, (role, kw) in USERS.items():
            self.h[name] = await self.api.user(name, role, **kw)
        self.ids["F"] = await self.open(FROLAND, to_jd=True)
        self.ids["R"] = await self.open(RINGERIKE)
        self.ids["X"] = await self.open(FROLAND, exercise="ovelse-x")
        staff = await self.request("root", "F", ["staff", "leaders"])
        held = await self.request("root", "F", ["ministry"])  # held for the second person
        ringerike = await self.request("root", "R", ["staff"])
        for r in (staff, held, ringerike):
            assert r.status_code == 201, r.text
        self.updates = {
            "F": {
                staff.json()["id"]: {
                    "rcpt-froland-stab-1",
                    "rcpt-froland-stab-2",
                    "rcpt-froland-leder",
                },
                held.json()["id"]: {"rcpt-departementet"},
            },
            "R": {ringerike.json()["id"]: NAMES["R"]},
        }
        async with self.api.app.state.sessions() as session:
            for key, written in receipts(staff.json()["id"]).items():
                for r in written:
                    r.incident_id = self.ids[key]
                await logbook.write(session, written)
            await session.commit()
        pipeline, _ = build_pipeline(settings, engine=self.api.app.state.engine)
        await pipeline.process(
            [Record(dead_event(FROLAND)), Record(dead_event(RINGERIKE)), Record(b"\xff")]
        )
        return self

    async def open(self, unit: str, *, to_jd: bool = False, **over: Any) -> str:
        body = {"type": "fire", "title": "Brann", "unit": unit, "severity": 4, **over}
        r = await self.api.client.post("/api/v1/incidents", json=body, headers=self.h["root"])
        assert r.status_code == 201, r.text
        iid = str(r.json()["id"])
        for level in ("region", "kdi", "jd") if to_jd else ():
            r = await self.api.client.post(
                f"/api/v1/incidents/{iid}/escalate",
                json={"to": level, "reason": "alvorlig"},
                headers=self.h["root"],
            )
            assert r.status_code == 201, r.text
        return iid

    async def request(self, who: str, key: str, groups: list[str]) -> httpx.Response:
        r = await self.api.client.post(
            "/api/v1/notifications/updates",
            json={
                "incident_id": self.ids[key],
                "groups": groups,
                "facts": FACTS,
                "next_update_at": (utcnow() + timedelta(hours=1)).isoformat(),
            },
            headers=self.h[who],
        )
        return r


async def test_every_role_on_every_read_path(api: ApiHarness, settings: Settings) -> None:
    world = await World(api).build(settings)
    get = api.client.get
    for who in USERS:
        for key, iid in world.ids.items():
            seen = key in VISIBLE[who]
            r = await get(f"/api/v1/incidents/{iid}/timeline", headers=world.h[who])
            assert r.status_code == (200 if seen else 403), (who, key, r.text)
            if seen:
                check_names(who, f"timeline {key}", r.text, NAMES[key])
            for uid, recipients in world.updates.get(key, {}).items():
                r = await get(f"/api/v1/notifications/updates/{uid}", headers=world.h[who])
                assert r.status_code == (200 if seen else 403), (who, key, r.text)
                if seen:
                    check_names(who, f"update {key}", r.text, recipients)
        async with _browser(api, who) as browser:
            for key, iid in world.ids.items():
                for path in (f"/incidents/{iid}", f"/incidents/{iid}/panels"):
                    page = await browser.get(path)
                    shown = key in VISIBLE[who] and who != "jd"  # the ministry's board: sitreps
                    assert page.status_code == (200 if shown else 403), (who, path)
                    if shown:
                        expected = NAMES[key] if path.endswith(iid) else set()
                        check_names(who, path, page.text, expected)
        r = await get("/api/v1/events/dlq", headers=world.h[who])
        wanted = DEAD_LETTERS[who]
        if wanted is None:
            assert r.status_code == 403, (who, r.text)
            assert "driftsansvar" in r.text
        else:
            assert r.status_code == 200, (who, r.text)
            assert {d["unit"] for d in r.json()} == wanted, who


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    s = await Sink().start()
    yield s
    await s.stop()


async def test_every_role_on_every_write_answer(
    api: ApiHarness, settings: Settings, sink: Sink
) -> None:
    """What the notifications API answers to a request, an approval and both corrections."""
    world = await World(api).build(settings, sink)
    dispatcher = Dispatcher(api.app.state.sessions, api.app.state.notify_config)
    try:
        for who in USERS:
            await _write_answers(world, dispatcher, who)
    finally:
        await dispatcher.aclose()


async def _write_answers(world: World, dispatcher: Dispatcher, who: str) -> None:
    post = world.api.client.post
    r = await world.request(who, "F", ["staff"])
    if who not in NOTIFIERS:
        assert r.status_code == 403, (who, r.text)
        return
    assert r.status_code == 201, (who, r.text)
    staff = {"rcpt-froland-stab-1", "rcpt-froland-stab-2"}
    check_names(who, "request", r.text, staff)
    update = r.json()
    for _ in range(20):  # deliver: corrections go to those who received the update
        if not await dispatcher.run_once():
            break
    fix = {"facts": FACTS, "next_update_at": (utcnow() + timedelta(hours=2)).isoformat()}
    r = await post(
        f"/api/v1/notifications/updates/{update['id']}/correct", json=fix, headers=world.h[who]
    )
    assert r.status_code == 201, (who, r.text)
    check_names(who, "correct", r.text, staff)
    message = update["messages"][0]["id"]
    r = await post(
        f"/api/v1/notifications/messages/{message}/correct", json=fix, headers=world.h[who]
    )
    assert r.status_code == 201, (who, r.text)
    check_names(who, "correct message", r.text, staff)
    author = "kdi" if who == "root" else "root"  # the second person is not the author
    held = (await world.request(author, "F", ["ministry"])).json()
    r = await post(f"/api/v1/notifications/updates/{held['id']}/approve", headers=world.h[who])
    assert r.status_code == 200, (who, r.text)
    check_names(who, "approve", r.text, {"rcpt-departementet"})


# --- the websocket, against a real server -------------------------------------------------

BOARD_USERS = [(name, role, kw.get("unit"), kw.get("region")) for name, (role, kw) in USERS.items()]


@pytest.fixture
def board(tmp_path: Path, database_url: str) -> Iterator[BoardServer]:
    server = start_board_server(tmp_path, database_url, BOARD_USERS)
    try:
        yield server
    finally:
        server.stop()


def test_every_role_on_the_websocket(board: BoardServer) -> None:
    ids: dict[str, str] = {}
    for key, unit, over in (
        ("F", FROLAND, {}),
        ("R", RINGERIKE, {}),
        ("X", FROLAND, {"exercise": "ovelse-x"}),
    ):
        body = {"type": "fire", "title": "Brann", "unit": unit, "severity": 4, **over}
        r = board.api("POST", "/api/v1/incidents", "root", json=body)
        assert r.status_code == 201, r.text
        ids[key] = r.json()["id"]
    written = receipts("u-1")
    written["R"] = [
        logbook.Receipt(
            "",
            "Varsel queued: staff/rcpt-ringerike-stab",
            {"update_id": "u-2", "group": "staff", "recipient": "rcpt-ringerike-stab"}
            | {"status": "queued"},
        )
    ]
    for key, items in written.items():
        for receipt in items:
            board.receipt(ids[key], receipt.text, **receipt.data)
        r = board.api(
            "POST",
            f"/api/v1/incidents/{ids[key]}/entries",
            "root",
            json={"kind": "observation", "text": f"slutt {key}"},
        )
        assert r.status_code == 201, r.text
    expected = {
        "F": {"rcpt-froland-leder", "rcpt-froland-leder-2"},
        "R": NAMES["R"],
        "X": NAMES["X"],
    }
    for who in USERS:
        if who == "jd":
            continue  # the ministry's feed carries approved situation reports only
        url = board.base.replace("http", "ws") + f"/ws/board?token={board.tokens[who]}&since=0"
        waiting = {f"slutt {key}" for key in VISIBLE[who]}
        got: list[dict[str, Any]] = []
        with connect(url, open_timeout=15) as ws:
            while waiting:
                got.append(json.loads(ws.recv(timeout=20)))
                waiting.discard(got[-1].get("entry", {}).get("text"))
        for key, iid in ids.items():
            mine = json.dumps([m for m in got if m.get("incident", {}).get("id") == iid])
            if key not in VISIBLE[who]:
                assert mine == "[]", (who, key)
            else:
                check_names(who, f"websocket {key}", mine, expected[key])
