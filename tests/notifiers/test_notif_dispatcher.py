"""The dispatcher against a real local HTTP sink (apprise json://), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select

from crisis.clock import utcnow
from crisis.domain.vocabulary import EntryKind
from crisis.log import append
from crisis.log.models import IncidentCreate, LogEntry
from crisis.log.verify import verify_log
from crisis.store.db import make_sessionmaker
from notifiers import service
from notifiers.config import NotifyConfig, parse_notify_config
from notifiers.dispatcher import Dispatcher
from notifiers.models import DeliveryAttempt, MessageStatus, OutboxMessage
from notifiers.rendering import EXERCISE_PREFIX
from tests.notif_sink import Sink

FACTS = {
    "title": "Brann i avdeling A",
    "known": "Røykutvikling i avdeling A kl. 02.40. Ingen personskader meldt.",
    "actions": "Avdelingen er evakuert, brannvesenet er på stedet.",
}


def make_config(sink: Sink, **delivery: Any) -> NotifyConfig:
    d = {"attempts_per_contact": 2, "backoff_seconds": 0.01, **delivery}
    people = {
        "staff-1": ["/staff/1"],
        "staff-2": ["/staff/2"],
        "union-1": ["/union/1"],
        "leader-a": ["/leader/a"],
        "leader-b": ["/leader/b"],
        "leader-c": ["/leader/c"],
        "liaison": ["/fam/liaison"],
        "jd": ["/jd/vakt"],
        "ntb": ["/media/ntb"],
        "feed": ["/public/feed"],
        "fb": ["/fail/fb", "/alt/fb"],
        "dead": ["/fail/dead"],
    }
    lines = ["version: 1", "delivery:"]
    lines += [f"  {k}: {v}" for k, v in d.items()]
    lines.append("people:")
    for pid, paths in people.items():
        lines.append(f"  - id: {pid}\n    name: {pid} (test)\n    contacts:")
        for i, path in enumerate(paths):
            channel = "sms" if pid.startswith("staff") and i == 0 else "webhook"
            lines.append(f"      - {{channel: {channel}, url: '{sink.url(path)}'}}")
    lines.append(
        """groups:
  - {id: g-staff, kind: staff, unit: agder-froland, members: [staff-1, staff-2, fb]}
  - {id: g-unions, kind: unions, unit: agder-froland, members: [union-1]}
  - id: g-leaders
    kind: leaders
    unit: agder-froland
    members: [leader-a]
    ack_required: true
    escalation: [leader-a, leader-b, leader-c]
  - {id: g-fam, kind: families, unit: agder-froland, members: [liaison]}
  - {id: g-jd, kind: ministry, members: [jd]}
  - {id: g-media, kind: media, members: [ntb]}
  - {id: g-public, kind: public, members: [feed]}
  - {id: g-dead, kind: cooperating, unit: agder-froland, members: [dead]}
exercises:
  ovelse-x: [staff-1, leader-a, feed]"""
    )
    return parse_notify_config("\n".join(lines), "test-notify.yaml")


@pytest.fixture
async def dispatchers() -> AsyncIterator[list[Dispatcher]]:
    made: list[Dispatcher] = []
    yield made
    for d in made:
        await d.aclose()


def new_dispatcher(
    made: list[Dispatcher], engine: AsyncEngine, config: NotifyConfig, **kw: Any
) -> Dispatcher:
    d = Dispatcher(make_sessionmaker(engine), config, **kw)
    made.append(d)
    return d


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    s = await Sink().start()
    yield s
    await s.stop()


async def open_incident(engine: AsyncEngine, exercise: str | None = None) -> str:
    async with make_sessionmaker(engine)() as session:
        incident, _ = await append.open_incident(
            session,
            incident=IncidentCreate(
                type="fire", title="Brann", unit="agder-froland", severity=4, exercise=exercise
            ),
            actor="user:kari",
        )
        await session.commit()
        return incident.id


async def request(engine: AsyncEngine, config: NotifyConfig, incident_id: str, **kw: Any) -> str:
    args: dict[str, Any] = {
        "facts": FACTS,
        "template": "update",
        "next_update_at": utcnow() + timedelta(minutes=30),
        "author": "user:kari",
        **kw,
    }
    async with make_sessionmaker(engine)() as session:
        update = await service.request_update(
            session, config=config, incident_id=incident_id, **args
        )
        await session.commit()
        return update.id


async def drain(d: Dispatcher, until: Callable[[], Any], within: float = 30.0) -> None:
    """Run passes until the condition holds (polling with a generous deadline)."""
    deadline = time.monotonic() + within
    while True:
        result = until()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached before the deadline")
        if not await d.run_once():
            await asyncio.sleep(0.02)


async def messages(engine: AsyncEngine, update_id: str | None = None) -> list[OutboxMessage]:
    async with make_sessionmaker(engine)() as session:
        stmt = select(OutboxMessage).order_by(col(OutboxMessage.id))
        if update_id:
            stmt = stmt.where(OutboxMessage.update_id == update_id)
        return list((await session.exec(stmt)).all())


async def receipts(engine: AsyncEngine, incident_id: str) -> list[dict[str, Any]]:
    async with make_sessionmaker(engine)() as session:
        rows = (
            await session.exec(
                select(LogEntry)
                .where(LogEntry.incident_id == incident_id, LogEntry.kind == EntryKind.MESSAGE)
                .order_by(col(LogEntry.seq))
            )
        ).all()
        return [r.data for r in rows]


def all_final(engine: AsyncEngine, update_id: str) -> Callable[[], Any]:
    async def check() -> bool:
        ms = await messages(engine, update_id)
        return bool(ms) and all(
            m.status
            not in (MessageStatus.PENDING, MessageStatus.HELD, MessageStatus.AWAITING_APPROVAL)
            for m in ms
        )

    return check


async def test_staff_are_told_before_the_public_under_a_slow_staff_channel(
    engine: AsyncEngine, sink: Sink, dispatchers: list[Dispatcher]
) -> None:
    sink.delay["/staff/"] = 1.0
    config = make_config(sink)
    incident = await open_incident(engine)
    update_id = await request(engine, config, incident, groups=["public", "media", "staff"])
    async with make_sessionmaker(engine)() as session:
        await service.approve_update(session, update_id=update_id, approver="user:ola")
        await session.commit()
    dispatcher = new_dispatcher(dispatchers, engine, config)
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    try:
        deadline = time.monotonic() + 30
        while not (sink.to("/public/") and sink.to("/media/")):
            assert time.monotonic() < deadline, sink.paths()
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
        staff = sink.to("/staff/")
    assert len(staff) == 2
    last_staff_delivered = max(h.answered for h in staff)
    for hit in sink.to("/public/") + sink.to("/media/"):
        assert hit.arrived >= last_staff_delivered
    log_ = await receipts(engine, incident)
    held = [r for r in log_ if r["status"] == "held" and r["group"] in ("public", "media")]
    assert {r["recipient"] for r in held} >= {"feed", "ntb"}
    assert any("ansatte" in (r["error"] or "") for r in held)
    # every group's message of the update carries the same facts version
    ours = [r for r in log_ if r.get("update_id") == update_id]
    assert len({r["facts_hash"] for r in ours}) == 1


async def test_two_person_rule_holds_families_until_a_second_person_approves(
    engine: AsyncEngine, sink: Sink, dispatchers: list[Dispatcher]
) -> None:
    config = make_config(sink)
    incident = await open_incident(engine)
    update_id = await request(
        engine, config, incident, groups=["staff", "families", "ministry"], kind="alarm"
    )
    dispatcher = new_dispatcher(dispatchers, engine, config)
    await drain(dispatcher, lambda: len(sink.to("/staff/")) == 2)
    for _ in range(3):
        await dispatcher.run_once()
    assert not sink.to("/fam/") and not sink.to("/jd/")  # staff alarm went at once, others wait
    async with make_sessionmaker(engine)() as session:
        with pytest.raises(service.ApprovalRefused, match="two-person"):
            await service.approve_update(session, update_id=update_id, approver="user:kari")
    assert not sink.to("/fam/")
    async with make_sessionmaker(engine)() as session:
        await service.approve_update(session, update_id=update_id, approver="user:ola")
        await session.commit()
    await drain(dispatcher, lambda: sink.to("/fam/") and sink.to("/jd/"))
    log_ = await receipts(engine, incident)
    fam = [r["status"] for r in log_ if r["recipient"] == "liaison"]
    assert fam == ["held", "queued", "sent"]


async def test_fallback_to_the_alternate_contact_after_retries(
    engine: AsyncEngine, sink: Sink, dispatchers: list[Dispatcher]
) -> None:
    sink.status["/fail/"] = 500
    config = make_config(sink)
    incident = await open_incident(engine)
    update_id = await request(engine, config, incident, groups=["staff"])
    dispatcher = new_dispatcher(dispatchers, engine, config)
    await drain(dispatcher, all_final(engine, update_id))
    fb = next(m for m in await messages(engine, update_id) if m.recipient == "fb")
    assert fb.status == MessageStatus.SENT and fb.contact_index == 1 and fb.total_attempts == 3
    assert [h.path for h in sink.hits if h.path.endswith("/fb")] == [
        "/fail/fb",
        "/fail/fb",
        "/alt/fb",
    ]
    async with make_sessionmaker(engine)() as session:
        attempts = (
            await session.exec(
                select(DeliveryAttempt)
                .where(DeliveryAttempt.message_id == fb.id)
                .order_by(col(DeliveryAttempt.id))
            )
        ).all()
    assert [(a.contact_index, a.status) for a in attempts] == [
        (0, "failed"),
        (0, "failed"),
        (1, "sent"),
    ]
    log_ = [r for r in await receipts(engine, incident) if r["recipient"] == "fb"]
    assert [(r["status"], r["attempt"]) for r in log_] == [
        ("queued", 0),
        ("failed", 1),
        ("failed", 2),
        ("sent", 3),
    ]
    assert "500" in (log_[1]["error"] or "")
    async with make_sessionmaker(engine)() as session:
        assert (await verify_log(session)).ok


async def test_unacknowledged_alarm_escalates_to_the_next_person(
    engine: AsyncEngine, sink: Sink, dispatchers: list[Dispatcher]
) -> None:
    config = make_config(sink, ack_timeout_seconds=300)
    incident = await open_incident(engine)
    update_id = await request(engine, config, incident, groups=["leaders"], kind="alarm")
    now = [utcnow()]  # a clock the test moves: no waiting for the acknowledgement deadline
    dispatcher = new_dispatcher(dispatchers, engine, config, clock=lambda: now[0])
    await drain(dispatcher, lambda: sink.to("/leader/a"))
    assert "Bekreft: svar" in sink.to("/leader/a")[0].body["message"]
    await dispatcher.run_once()
    assert not sink.to("/leader/b")  # not yet overdue
    now[0] += timedelta(seconds=301)
    await drain(dispatcher, lambda: sink.to("/leader/b"))
    ms = await messages(engine, update_id)
    b = next(m for m in ms if m.recipient == "leader-b")
    assert b.escalated_from == next(m.id for m in ms if m.recipient == "leader-a")
    async with make_sessionmaker(engine)() as session:
        assert b.ack_code is not None
        await service.acknowledge(session, code=b.ack_code)
        await session.commit()
    now[0] += timedelta(seconds=301)
    for _ in range(3):
        await dispatcher.run_once()
    assert not sink.to("/leader/c")  # b acknowledged: no further escalation
    log_ = await receipts(engine, incident)
    assert ("leader-a", "timed_out") in {(r["recipient"], r["status"]) for r in log_}
    assert ("leader-b", "acknowledged") in {(r["recipient"], r["status"]) for r in log_}


async def test_exercise_messages_reach_only_registered_participants(
    engine: AsyncEngine, sink: Sink, dispatchers: list[Dispatcher]
) -> None:
    config = make_config(sink)
    incident = await open_incident(engine, exercise="ovelse-x")
    update_id = await request(
        engine,
        config,
        incident,
        groups=["staff", "leaders", "unions", "families", "ministry", "media", "public"],
    )
    async with make_sessionmaker(engine)() as session:
        await service.approve_update(session, update_id=update_id, approver="user:ola")
        # a buggy playbook writing straight into the outbox, without exercise flag or prefix
        session.add(
            OutboxMessage(
                update_id=update_id,
                incident_id=incident,
                exercise=None,
                group="ministry",
                group_id="g-jd",
                recipient="jd",
                language="nb",
                title="Ekte melding",
                body="Dette er ingen øvelse.",
            )
        )
        session.add(
            OutboxMessage(
                update_id=update_id,
                incident_id=incident,
                exercise=None,
                group="staff",
                group_id="g-staff",
                recipient="staff-1",
                language="nb",
                title="Uten prefiks",
                body="Melding uten øvelsesmerking.",
            )
        )
        await session.commit()
    dispatcher = new_dispatcher(dispatchers, engine, config)
    await drain(dispatcher, all_final(engine, update_id))
    participants = {"/staff/1", "/leader/a", "/public/feed"}
    assert set(sink.paths()) == participants  # zero deliveries to the real people
    assert len(sink.hits) == 4  # staff-1 twice, leader-a, feed
    for hit in sink.hits:
        assert hit.body["message"].startswith(EXERCISE_PREFIX)
    ms = await messages(engine, update_id)
    blocked = {m.recipient for m in ms if m.status == MessageStatus.BLOCKED}
    assert blocked == {"staff-2", "fb", "union-1", "liaison", "jd", "ntb"}
    log_ = await receipts(engine, incident)
    assert {r["recipient"] for r in log_ if r["status"] == "blocked"} == blocked


async def test_correction_reaches_exactly_the_original_recipients(
    engine: AsyncEngine, sink: Sink, dispatchers: list[Dispatcher]
) -> None:
    sink.status["/fail/"] = 500
    config = make_config(sink, attempts_per_contact=1)
    incident = await open_incident(engine)
    update_id = await request(engine, config, incident, groups=["staff", "cooperating"])
    dispatcher = new_dispatcher(dispatchers, engine, config)
    await drain(dispatcher, all_final(engine, update_id))
    received = {m.recipient for m in await messages(engine, update_id) if m.status == "sent"}
    assert received == {"staff-1", "staff-2", "fb"}  # 'dead' failed on its only contact
    original_paths = {h.path for h in sink.hits if h.status == 200}
    sink.hits.clear()
    async with make_sessionmaker(engine)() as session:
        correction = await service.correct_update(
            session,
            config=config,
            update_id=update_id,
            facts={"known": "Det var ikke brann, men en utløst røykvarsler.", "actions": "Ingen."},
            next_update_at=utcnow() + timedelta(hours=1),
            author="user:kari",
        )
        await session.commit()
    await drain(dispatcher, all_final(engine, correction.id))
    assert {h.path for h in sink.hits} == original_paths
    assert len(sink.hits) == 3
    assert all(h.body["message"].startswith("RETTELSE") for h in sink.hits)


async def test_a_message_cannot_be_requested_without_the_next_update_time(
    engine: AsyncEngine, sink: Sink, dispatchers: list[Dispatcher]
) -> None:
    from notifiers.rendering import MissingNextUpdate

    config = make_config(sink)
    incident = await open_incident(engine)
    with pytest.raises(MissingNextUpdate):
        await request(engine, config, incident, groups=["staff"], next_update_at=None)
    assert await messages(engine) == []


async def test_a_read_timeout_is_recorded_as_timed_out_and_retried(
    engine: AsyncEngine, sink: Sink, dispatchers: list[Dispatcher]
) -> None:
    sink.delay["/slow/"] = 1.0
    config = make_config(sink, attempts_per_contact=1)
    slow = config.person("fb").model_copy(
        update={
            "contacts": (
                config.person("fb")
                .contacts[0]
                .model_copy(update={"url": sink.url("/slow/fb?rto=0.2")}),
                config.person("fb").contacts[1],
            )
        }
    )
    config = config.model_copy(
        update={"people": tuple(slow if p.id == "fb" else p for p in config.people)}
    )
    config.model_post_init(None)
    incident = await open_incident(engine)
    update_id = await request(engine, config, incident, groups=["staff"])
    dispatcher = new_dispatcher(dispatchers, engine, config)
    await drain(dispatcher, all_final(engine, update_id))
    log_ = [r for r in await receipts(engine, incident) if r["recipient"] == "fb"]
    assert [r["status"] for r in log_] == ["queued", "timed_out", "sent"]
    assert "0.2" in log_[1]["error"]
    assert log_[2]["channel"] == "webhook" and log_[2]["contact"] == 1


async def test_a_playbook_offset_delays_delivery_until_send_at(
    engine: AsyncEngine, sink: Sink, dispatchers: list[Dispatcher]
) -> None:
    config = make_config(sink)
    incident = await open_incident(engine)
    start = utcnow()
    await request(
        engine, config, incident, groups=["unions"], send_at=start + timedelta(minutes=15)
    )
    now = [start]
    dispatcher = new_dispatcher(dispatchers, engine, config, clock=lambda: now[0])
    assert await dispatcher.run_once() == 0
    now[0] = start + timedelta(minutes=15, seconds=1)
    await drain(dispatcher, lambda: sink.to("/union/1"))
    queued = [r for r in await receipts(engine, incident) if r["status"] == "queued"]
    assert queued and queued[0]["send_at"].startswith(
        f"{start + timedelta(minutes=15):%Y-%m-%dT%H:%M}"
    )


async def test_an_unapproved_row_written_past_the_service_is_still_held(
    engine: AsyncEngine, sink: Sink, dispatchers: list[Dispatcher]
) -> None:
    config = make_config(sink)
    incident = await open_incident(engine)
    update_id = await request(engine, config, incident, groups=["staff"])
    async with make_sessionmaker(engine)() as session:
        session.add(
            OutboxMessage(
                update_id=update_id,
                incident_id=incident,
                group="media",
                group_id="g-media",
                recipient="ntb",
                language="nb",
                body="Pressemelding uten godkjenning.",
            )
        )
        await session.commit()
    dispatcher = new_dispatcher(dispatchers, engine, config)

    async def staff_sent_and_ntb_held() -> bool:
        ms = {m.recipient: m.status for m in await messages(engine, update_id)}
        return ms["ntb"] == MessageStatus.AWAITING_APPROVAL and ms["staff-1"] == "sent"

    await drain(dispatcher, staff_sent_and_ntb_held)
    for _ in range(3):
        await dispatcher.run_once()
    assert not sink.to("/media/")
    async with make_sessionmaker(engine)() as session:
        await service.approve_update(session, update_id=update_id, approver="user:ola")
        await session.commit()
    await drain(dispatcher, lambda: sink.to("/media/ntb"))


async def test_two_sharded_dispatchers_deliver_each_message_once_and_keep_the_order(
    engine: AsyncEngine, sink: Sink, dispatchers: list[Dispatcher]
) -> None:
    sink.delay["/staff/"] = 0.5
    config = make_config(sink)
    incident = await open_incident(engine)
    update_id = await request(engine, config, incident, groups=["staff", "unions", "public"])
    async with make_sessionmaker(engine)() as session:
        await service.approve_update(session, update_id=update_id, approver="user:ola")
        await session.commit()
    ms = await messages(engine, update_id)
    assert {m.id % 2 for m in ms} == {0, 1}  # both shards have work
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(new_dispatcher(dispatchers, engine, config, shard=(k, 2)).run(stop))
        for k in range(2)
    ]
    try:
        deadline = time.monotonic() + 30
        while not await all_final(engine, update_id)():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    ok = [h.path for h in sink.hits if h.status == 200]
    assert sorted(ok) == sorted(set(ok))  # nobody got it twice
    assert set(ok) == {"/staff/1", "/staff/2", "/fail/fb", "/union/1", "/public/feed"}
    staff_done = max(h.answered for h in sink.to("/staff/"))
    assert all(h.arrived >= staff_done for h in sink.to("/public/"))
    with pytest.raises(ValueError, match="shard"):
        Dispatcher(make_sessionmaker(engine), config, shard=(2, 2))


async def test_a_pass_is_recorded_in_slices_while_the_rest_is_still_being_sent(
    engine: AsyncEngine, sink: Sink, dispatchers: list[Dispatcher]
) -> None:
    sink.delay["/p/6"] = 0.5  # one slow target: the others must not wait for it to be logged
    ids = [f"p{i}" for i in range(7)]
    lines = ["version: 1", "delivery: {attempts_per_contact: 1}", "people:"]
    for i, pid in enumerate(ids):
        url = "nosuchscheme://nowhere" if i == 3 else sink.url(f"/p/{i}")
        lines.append(
            f"  - {{id: {pid}, name: {pid}, contacts: [{{channel: webhook, url: '{url}'}}]}}"
        )
    lines += ["groups:", f"  - {{id: g, kind: staff, members: [{', '.join(ids)}]}}"]
    config = parse_notify_config("\n".join(lines), "t.yaml", check_urls=False)
    incident = await open_incident(engine)
    update_id = await request(engine, config, incident, groups=["staff"])
    d = new_dispatcher(dispatchers, engine, config, record_every=2)
    assert await d.run_once() == 7  # one pass: every attempt recorded when it returns
    async with make_sessionmaker(engine)() as session:
        rows = (
            await session.exec(
                select(LogEntry)
                .where(LogEntry.incident_id == incident, LogEntry.kind == EntryKind.MESSAGE)
                .order_by(col(LogEntry.seq))
            )
        ).all()
        report = await verify_log(session)
    attempts = [r for r in rows if r.data["status"] != "queued"]
    assert sorted(r.data["recipient"] for r in attempts) == ids  # one receipt per target
    by = {r.data["recipient"]: r for r in attempts}
    assert by["p3"].data["status"] == "failed"
    assert by["p3"].data["error"] == "invalid or unsupported apprise URL"
    assert all(by[p].data["status"] == "sent" for p in ids if p != "p3")
    assert by["p6"].seq == max(r.seq for r in attempts)  # the slow one came last …
    assert by["p6"].at > min(r.at for r in attempts)  # … in a later transaction
    assert report.ok, report.breaks
    assert {m.status for m in await messages(engine, update_id)} == {"sent", "failed"}
