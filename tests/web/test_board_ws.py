"""``/ws/board`` against a real server: auth, scope, masking, resume after a reconnect."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from crisis.log.models import DataAccess
from crisis.store.db import make_engine, make_sessionmaker
from tests.boardserver import BoardServer, run_async, start_board_server


@pytest.fixture
def board(tmp_path: Path, database_url: str) -> Iterator[BoardServer]:
    server = start_board_server(tmp_path, database_url)
    server.database_url = database_url  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.stop()


def _ws(board: BoardServer, name: str | None, since: int | None = None) -> ClientConnection:
    url = board.base.replace("http", "ws") + "/ws/board"
    params = []
    if name:
        params.append(f"token={board.tokens[name]}")
    if since is not None:
        params.append(f"since={since}")
    return connect(url + ("?" + "&".join(params) if params else ""), open_timeout=15)


def _until(ws: ClientConnection, pred: Any, limit: int = 200) -> list[dict[str, Any]]:
    """Read messages until ``pred(messages)`` holds (20 s per message at most)."""
    got: list[dict[str, Any]] = []
    for _ in range(limit):
        got.append(json.loads(ws.recv(timeout=20)))
        if pred(got):
            return got
    raise AssertionError(f"condition not met: {got}")


def _texts(msgs: list[dict[str, Any]]) -> list[str]:
    return [m["entry"]["text"] for m in msgs if m["type"] == "entry"]


def _open(board: BoardServer, who: str, unit: str) -> str:
    body = {"type": "fire", "title": "Brann", "unit": unit, "severity": 3}
    r = board.api("POST", "/api/v1/incidents", who, json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _note(board: BoardServer, iid: str, text: str, who: str = "op", **data: Any) -> int:
    r = board.api(
        "POST",
        f"/api/v1/incidents/{iid}/entries",
        who,
        json={"kind": "observation", "text": text, **data},
    )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def test_unauthenticated_sockets_are_refused(board: BoardServer) -> None:
    with _ws(board, None) as ws, pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


def test_scope_masking_and_resume_after_reconnect(board: BoardServer) -> None:
    froland = _open(board, "op", "agder-froland")
    ringerike = _open(board, "op-ringerike", "ringerike")
    with _ws(board, "op") as op, _ws(board, "komm") as komm:
        hello = json.loads(op.recv(timeout=20))
        assert hello["type"] == "hello"
        json.loads(komm.recv(timeout=20))
        _note(board, ringerike, "Ringerike: røyk i kjelleren", who="op-ringerike")
        _note(board, froland, "Froland: innsatt flyttet", inmate_ref="INN-4471")
        msgs = _until(op, lambda m: "Froland: innsatt flyttet" in _texts(m))
        assert all(m["incident"]["unit"] == "agder-froland" for m in msgs if m["type"] == "entry")
        mine = next(m for m in msgs if m.get("entry", {}).get("text") == "Froland: innsatt flyttet")
        assert mine["entry"]["data"]["inmate_ref"] == "INN-4471"
        assert mine["seq"] == mine["entry"]["id"] and mine["resume"] >= mine["seq"] - 1
        theirs = _until(komm, lambda m: "Froland: innsatt flyttet" in _texts(m))
        assert "INN-4471" not in json.dumps(theirs)  # communication staff: masked
        assert "Ringerike: røyk i kjelleren" in _texts(theirs)  # national role sees all units
        resume = mine["resume"]

    # offline: entries are written; a reconnect with ?since= gets exactly those, in order
    missed = [_note(board, froland, f"Mens frakoblet {n}") for n in range(3)]
    with _ws(board, "op", since=resume) as op:
        msgs = _until(op, lambda m: len([x for x in m if x["type"] == "entry"]) >= 3)
        got = [m["seq"] for m in msgs if m["type"] == "entry"]
        assert got == missed
        live = _note(board, froland, "Tilbake i sanntid")
        msgs = _until(op, lambda m: "Tilbake i sanntid" in _texts(m))
        assert [m["seq"] for m in msgs if m["type"] == "entry"] == [live]

    # every unmasked view was recorded; the masked ones were not
    async def accesses() -> list[DataAccess]:
        from sqlmodel import select

        engine = make_engine(board.database_url)  # type: ignore[attr-defined]
        try:
            async with make_sessionmaker(engine)() as session:
                return list((await session.exec(select(DataAccess))).all())
        finally:
            await engine.dispose()

    rows = run_async(accesses)
    assert rows and {r.actor for r in rows} == {"user:op"}
    assert all(r.inmate_refs == ["INN-4471"] and r.channel == "websocket" for r in rows)


def test_ministry_receives_approved_reports_only(board: BoardServer) -> None:
    iid = _open(board, "op", "agder-froland")
    with _ws(board, "jd") as jd:
        json.loads(jd.recv(timeout=20))
        _note(board, iid, "Ikke for departementet")
        sitrep = board.api("POST", f"/api/v1/incidents/{iid}/sitreps", "op").json()
        r = board.api("POST", f"/api/v1/sitreps/{sitrep['id']}/approve", "op", json={"version": 1})
        assert r.status_code == 200, r.text
        msgs = _until(jd, lambda m: any(x["type"] == "sitrep_approved" for x in m))
        assert [m["type"] for m in msgs] == ["sitrep_approved"]
        assert msgs[0]["sitrep_id"] == sitrep["id"]
        assert "Ikke for departementet" not in json.dumps(msgs)
