"""The local delivery inbox (``inbox://``) and retrying failed deliveries, through the real
dispatcher, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select

from crisis.store.db import make_sessionmaker
from notifiers import service
from notifiers.config import load_notify_config, parse_notify_config
from notifiers.dispatcher import Dispatcher
from notifiers.models import InboxMessage, MessageStatus
from notifiers.rendering import EXERCISE_PREFIX
from tests.notif_sink import Sink
from tests.notifiers.test_notif_dispatcher import (
    all_final,
    drain,
    messages,
    new_dispatcher,
    open_incident,
    receipts,
    request,
)


@pytest.fixture
async def dispatchers() -> AsyncIterator[list[Dispatcher]]:
    made: list[Dispatcher] = []
    yield made
    for d in made:
        await d.aclose()


async def inbox(engine: AsyncEngine) -> list[InboxMessage]:
    async with make_sessionmaker(engine)() as session:
        rows = await session.exec(select(InboxMessage).order_by(col(InboxMessage.id)))
        return list(rows.all())


async def test_an_alarm_to_the_shipped_demo_recipients_lands_in_the_inbox_as_sent(
    engine: AsyncEngine, dispatchers: list[Dispatcher]
) -> None:
    config = load_notify_config(None)  # the shipped demo file: every contact is inbox://
    assert all(c.url.startswith("inbox://") for p in config.people for c in p.contacts)
    incident = await open_incident(engine)
    update = await request(engine, config, incident, groups=["staff"], kind="alarm")
    d = new_dispatcher(dispatchers, engine, config)
    await drain(d, all_final(engine, update))

    sent = await messages(engine, update)
    staff = {"froland-staff-channel", "espen-braten", "elin-midtbo", "kdi-kommunikasjon"}
    assert {m.recipient for m in sent} == staff
    assert {m.status for m in sent} == {MessageStatus.SENT}
    got = await inbox(engine)
    assert sorted(r.recipient for r in got) == sorted(m.recipient for m in sent)
    by = {r.recipient: r for r in got}
    espen = by["espen-braten"]
    message = next(m for m in sent if m.recipient == "espen-braten")
    assert (espen.channel, espen.address) == ("sms", "inbox://espen-braten/sms")
    assert espen.update_id == update and espen.incident_id == incident
    assert espen.message_id == message.id and espen.exercise is None
    assert message.ack_code and message.ack_code in espen.body  # the reply code, as sent
    assert espen.subject == message.title
    assert by["froland-staff-channel"].channel == "matrix"
    states = {r["recipient"]: r["status"] for r in await receipts(engine, incident)}
    assert set(states.values()) == {"sent"}


async def test_exercise_messages_in_the_inbox_are_marked_and_reach_participants_only(
    engine: AsyncEngine, dispatchers: list[Dispatcher]
) -> None:
    config = load_notify_config(None)
    incident = await open_incident(engine, exercise="ovelse-2026-11-brann")
    update = await request(engine, config, incident, groups=["staff"])
    await drain(new_dispatcher(dispatchers, engine, config), all_final(engine, update))
    got = await inbox(engine)
    # elin-midtbo is no participant of the exercise: blocked, and not in the inbox
    assert {r.recipient for r in got} == {
        "froland-staff-channel",
        "espen-braten",
        "kdi-kommunikasjon",
    }
    assert all(r.exercise == "ovelse-2026-11-brann" for r in got)
    assert all(r.body.startswith(EXERCISE_PREFIX) for r in got)
    states = {m.recipient: m.status for m in await messages(engine, update)}
    assert states["elin-midtbo"] == MessageStatus.BLOCKED


RETRY_CONFIG = """
version: 1
delivery: {attempts_per_contact: 1, backoff_seconds: 0.01}
people:
  - {id: ok, name: ok, contacts: [{channel: sms, url: "inbox://ok/sms"}]}
  - {id: down, name: down, contacts: [{channel: webhook, url: "URL"}]}
groups:
  - {id: g-staff, kind: staff, unit: agder-froland, members: [ok, down]}
"""


async def test_a_failed_delivery_is_retried_on_request_and_then_delivered(
    engine: AsyncEngine, dispatchers: list[Dispatcher]
) -> None:
    sink = await Sink().start()
    try:
        sink.status["/down"] = 500
        config = parse_notify_config(RETRY_CONFIG.replace("URL", sink.url("/down")), "r.yaml")
        incident = await open_incident(engine)
        update = await request(engine, config, incident, groups=["staff"])
        await drain(new_dispatcher(dispatchers, engine, config), all_final(engine, update))
        states = {m.recipient: m.status for m in await messages(engine, update)}
        assert states == {"ok": MessageStatus.SENT, "down": MessageStatus.FAILED}

        async with make_sessionmaker(engine)() as session:
            with pytest.raises(service.NotifyError) as refused:
                await service.retry_failed(
                    session, update_id=update, by="user:kari", group="leaders"
                )
            assert refused.value.status == 409  # nothing of that group failed
            retried = await service.retry_failed(session, update_id=update, by="user:kari")
            await session.commit()
        assert [m.recipient for m in retried] == ["down"]
        last = (await receipts(engine, incident))[-1]
        assert (last["recipient"], last["status"], last["retried_by"]) == (
            "down",
            "queued",
            "user:kari",
        )
        del sink.status["/down"]  # the gateway is back: the next pass delivers it
        await drain(new_dispatcher(dispatchers, engine, config), all_final(engine, update))
        states = {m.recipient: m.status for m in await messages(engine, update)}
        assert states["down"] == MessageStatus.SENT
        assert (await receipts(engine, incident))[-1]["status"] == "sent"
        assert [r.recipient for r in await inbox(engine)] == ["ok"]  # an HTTP target is not
    finally:
        await sink.stop()
