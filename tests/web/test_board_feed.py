"""The board feed on a real database: order, fan-out, slow clients, late commits, filtering."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from crisis import log
from crisis.accounts.models import User
from crisis.clock import utcnow
from crisis.log.append import append, open_incident
from crisis.log.models import Incident, IncidentCreate, LogEntry
from crisis.store.db import make_sessionmaker
from web.board.feed import RESYNC, BoardFeed, Change, Subscriber, topic_of
from web.board.feed import head as board_head
from web.board.ws import present
from web.deps import scope_of


async def _incident(engine: AsyncEngine, unit: str = "agder-froland", **over: Any) -> str:
    async with make_sessionmaker(engine)() as session:
        incident, _ = await open_incident(
            session,
            incident=IncidentCreate(type="fire", title="Brann", unit=unit, severity=3, **over),
            actor="system:test",
        )
        await session.commit()
        return incident.id


async def _write(engine: AsyncEngine, iid: str, n: int, **data: Any) -> None:
    async with make_sessionmaker(engine)() as session:
        for k in range(n):
            await append(
                session,
                incident_id=iid,
                kind="observation",
                actor="system:test",
                text=f"obs {k}",
                data=data,
            )
        await session.commit()


async def _until(predicate: Any) -> None:
    """Poll for a condition with a generous deadline (20 s), never a fixed sleep."""
    async with asyncio.timeout(20):
        while not predicate():  # noqa: ASYNC110 (the state lives in another task)
            await asyncio.sleep(0.02)


async def test_fan_out_in_order_and_a_slow_client_never_holds_up_the_others(
    engine: AsyncEngine,
) -> None:
    feed = BoardFeed(make_sessionmaker(engine), interval=0.02, queue_size=10)
    iid = await _incident(engine)
    fast = await feed.subscribe()
    slow = await feed.subscribe()  # never reads
    got: list[int] = []

    async def reader(sub: Subscriber) -> None:
        while True:
            item = await sub.queue.get()
            assert item is not RESYNC, "the fast reader keeps up"
            got.append(item.entry.id)

    task = asyncio.create_task(reader(fast))
    try:
        for n in range(1, 31):  # paced: the fast reader has at most one entry waiting
            await _write(engine, iid, 1)
            await _until(lambda n=n: len(got) == n)
        assert got == sorted(got) and len(set(got)) == 30
        assert slow.overflowed and slow.queue.get_nowait() is RESYNC and slow.queue.empty()
        assert slow.dropped == 30
        polls = feed.polls
        await _until(lambda: feed.polls > polls + 2)  # the poller carries on
    finally:
        task.cancel()
        await feed.close()


async def test_an_entry_committed_late_below_the_head_is_still_delivered(
    engine: AsyncEngine,
) -> None:
    """PostgreSQL may commit id N+1 after N+2: the gap is kept open and filled."""
    sessions = make_sessionmaker(engine)
    iid = await _incident(engine)
    feed = BoardFeed(sessions, interval=0.02, gap_grace=30)
    sub = Subscriber(asyncio.Queue(maxsize=10))
    feed.clients.add(sub)  # no poller task: polls are driven by hand
    async with sessions() as session:
        head = feed.last = await board_head(session)

    def raw(entry_id: int, seq: int) -> LogEntry:
        return LogEntry(
            id=entry_id,
            incident_id=iid,
            seq=seq,
            kind="observation",
            at=utcnow(),
            actor="system:test",
            text=f"id {entry_id}",
            prev_hash="0" * 64,
            hash="f" * 64,
        )

    async with sessions() as session:
        session.add(raw(head + 2, 102))
        await session.commit()
    assert await feed.poll_once() == 1
    assert feed.last == head + 2 and feed.resume == head  # head+1 may still come
    async with sessions() as session:
        session.add(raw(head + 1, 101))
        await session.commit()
    assert await feed.poll_once() == 1
    assert feed.resume == head + 2 and not feed.gaps
    delivered = [sub.queue.get_nowait().entry.id for _ in range(2)]
    assert delivered == [head + 2, head + 1]


async def test_messages_are_filtered_and_masked_per_user(engine: AsyncEngine) -> None:
    from crisis.domain.organisation import load_organisation

    org = load_organisation()
    sessions = make_sessionmaker(engine)
    iid = await _incident(engine)
    await _write(engine, iid, 1, inmate_ref="INN-4471")
    async with sessions() as session:
        entries = await log.timeline(session, iid)
        incident = await session.get(Incident, iid)
    assert incident is not None
    change = Change(entries[-1], incident, entries[-1].id or 0)

    def as_(role: str, **kw: Any) -> tuple[dict[str, Any] | None, list[str]]:
        user = User(name=role, role=role, password_hash="", **kw)
        return present(user, scope_of(user, org), change)

    msg, refs = as_("operator", unit="agder-froland")
    assert msg is not None and msg["entry"]["data"]["inmate_ref"] == "INN-4471"
    assert refs == ["INN-4471"]  # shown unmasked → to be recorded
    msg, refs = as_("communication")
    assert msg is not None and "INN-4471" not in str(msg) and refs == []
    assert as_("operator", unit="ringerike") == (None, [])  # another unit's incident
    assert as_("ministry") == (None, [])  # the ministry gets approved reports only
    assert msg["topic"] == "entry" and topic_of("task_update") == "task"
    assert topic_of("message") == "notification" and topic_of("escalation") == "incident"
