"""``/ws/board``: the live feed for one user, filtered to what they may see.

Authenticated by the session cookie or ``?token=``, checked again every
``CRISIS_BOARD_RECHECK_SECONDS`` (a logout or a revoked token closes it with 4401). A client
sends ``?since=N`` (the ``resume`` of the last message it saw) and first gets everything after
N from the database, then the live feed. Messages are JSON::

    {"seq": 42, "resume": 42, "type": "entry", "topic": "task",
     "incident": {...}, "entry": {...}}

``topic`` says what changed (``incident``, ``task``, ``notification`` or ``entry``). The
ministry receives only ``{"type": "sitrep_approved", ...}``. A client that falls behind gets
``{"type": "resync"}`` after its missed entries have been re-read from the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from sqlmodel.ext.asyncio.session import AsyncSession

from crisis.accounts.models import User
from crisis.accounts.service import Scope
from crisis.domain.vocabulary import EntryKind, Role
from crisis.log import privacy
from web.board.feed import RESYNC, BoardFeed, Change, entry_json, fetch, incident_json, topic_of
from web.deps import scope_of, user_of

router = APIRouter(tags=["board"])

BACKFILL_LIMIT = 5000
SEND_TIMEOUT = 10.0


def feed_of(app: Any) -> BoardFeed:
    feed: BoardFeed | None = getattr(app.state, "board_feed", None)
    if feed is None:
        feed = BoardFeed(app.state.sessions)
        app.state.board_feed = feed
    return feed


def present(user: User, scope: Scope, change: Change) -> tuple[dict[str, Any] | None, list[str]]:
    """The message this user gets for a change (None: not for them) and refs shown unmasked."""
    entry, incident = change.entry, change.incident
    if user.role == Role.MINISTRY:
        if (
            entry.kind == EntryKind.SITUATION_REPORT
            and entry.data.get("action") == "approved"
            and incident.exercise is None
        ):
            return {
                "seq": entry.id,
                "resume": change.resume,
                "type": "sitrep_approved",
                "sitrep_id": entry.data.get("sitrep_id"),
                "incident": {"id": incident.id, "title": incident.title},
            }, []
        return None, []
    if not scope.allows(incident):
        return None, []
    item, refs = privacy.entry_for_viewer(user, entry)
    return {
        "seq": entry.id,
        "resume": change.resume,
        "type": "entry",
        "topic": topic_of(entry.kind),
        "incident": incident_json(incident),
        "entry": entry_json(item),
    }, refs


async def _user(ws: WebSocket, session: AsyncSession) -> User | None:
    return await user_of(ws, session, token=ws.query_params.get("token") or None)


async def _still_signed_in(ws: WebSocket, user: User) -> bool:
    """Whether the socket's session or token still names ``user`` (not logged out, revoked,
    expired or disabled since it opened)."""
    async with ws.app.state.sessions() as session:
        again = await _user(ws, session)
    return again is not None and again.id == user.id


class _Client:
    def __init__(self, ws: WebSocket, user: User, scope: Scope) -> None:
        self.ws, self.user, self.scope = ws, user, scope
        self.sent: set[int] = set()
        self.resume = 0

    async def deliver(self, changes: list[Change]) -> None:
        """Send what this user may see; record the unmasked identities it contained."""
        refs_by_incident: dict[str, tuple[list[int], list[str]]] = {}
        for change in changes:
            assert change.entry.id is not None
            self.resume = max(self.resume, change.resume)
            if change.entry.id in self.sent:
                continue
            self.sent.add(change.entry.id)
            message, refs = present(self.user, self.scope, change)
            if message is None:
                continue
            await asyncio.wait_for(self.ws.send_text(json.dumps(message)), SEND_TIMEOUT)
            if refs:
                ids, seen = refs_by_incident.setdefault(change.entry.incident_id, ([], []))
                ids.append(change.entry.id)
                seen.extend(refs)
        if len(self.sent) > 20_000:
            self.sent = set(sorted(self.sent)[-10_000:])
        if refs_by_incident:
            async with self.ws.app.state.sessions() as session:
                for incident_id, (ids, refs) in refs_by_incident.items():
                    await privacy.record_access(
                        session,
                        user=self.user,
                        incident_id=incident_id,
                        entry_ids=ids,
                        refs=refs,
                        channel="websocket",
                    )
                await session.commit()

    async def backfill(self, since: int) -> None:
        """Re-read from the database everything after ``since`` (reconnect or resync)."""
        after = since
        while True:
            async with self.ws.app.state.sessions() as session:
                rows = await fetch(session, after=after, limit=BACKFILL_LIMIT)
            if not rows:
                return
            await self.deliver([Change(e, i, e.id or 0) for e, i in rows])
            after = rows[-1][0].id or after
            if len(rows) < BACKFILL_LIMIT:
                return


@router.websocket("/ws/board")
async def board_socket(ws: WebSocket) -> None:
    async with ws.app.state.sessions() as session:
        user = await _user(ws, session)
    if user is None:
        # Accept, then close with a code the page understands (a refused handshake is opaque).
        await ws.accept()
        await ws.close(code=4401, reason="innlogging kreves / authentication required")
        return
    scope = scope_of(user, ws.app.state.organisation)
    await ws.accept()
    feed = feed_of(ws.app)
    sub = await feed.subscribe()
    client = _Client(ws, user, scope)
    since_raw = ws.query_params.get("since")
    since = int(since_raw) if since_raw is not None and since_raw.isdigit() else None
    client.resume = feed.resume if since is None else since
    receiver = asyncio.create_task(_drain_incoming(ws))
    try:
        await ws.send_text(json.dumps({"type": "hello", "resume": client.resume}))
        if since is not None:
            await client.backfill(since)
        every = ws.app.state.settings.board_recheck_seconds
        recheck_at = time.monotonic() + every
        while not receiver.done():
            if time.monotonic() >= recheck_at:
                if not await _still_signed_in(ws, user):
                    await ws.close(code=4401, reason="innlogging kreves / authentication required")
                    break
                recheck_at = time.monotonic() + every
            getter = asyncio.create_task(sub.queue.get())
            await asyncio.wait(
                {getter, receiver},
                timeout=max(0.0, recheck_at - time.monotonic()),
                return_when=asyncio.FIRST_COMPLETED,
            )
            if not getter.done():
                getter.cancel()  # the queue keeps the item of a cancelled get
                if receiver.done():
                    break
                continue
            item = getter.result()
            if item is RESYNC:
                sub.overflowed = False
                await client.backfill(client.resume)
                await ws.send_text(json.dumps({"type": "resync", "resume": feed.resume}))
                continue
            batch = [item]
            while not sub.queue.empty() and len(batch) < 200:
                nxt = sub.queue.get_nowait()
                if nxt is RESYNC:
                    sub.queue.put_nowait(RESYNC)
                    break
                batch.append(nxt)
            await client.deliver(batch)
    except (WebSocketDisconnect, TimeoutError, RuntimeError):
        pass
    finally:
        feed.unsubscribe(sub)
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
            await receiver


async def _drain_incoming(ws: WebSocket) -> None:
    """Read (and ignore) what the client sends, so a disconnect is noticed at once."""
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            await ws.receive_text()
