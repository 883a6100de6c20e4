"""The safety rules as properties: random sequences of actions against the API and the real
dispatcher (one or two shards) delivering to a local HTTP sink, checked after every step.

Actions: open incidents (real or exercise, a unit with or without staff groups), ask for
updates to any groups as any person, approve as any person, correct, let a playbook queue its
plan, try the side paths (a plan or a receipt posted as a log entry), dispatch with one or two
shards. After each step: no media/public message reached the sink before the incident's
earlier staff messages were answered; no families/ministry/media/public/inmates message reached
it without an approver other than its author; no exercise message reached a non-participant,
and each was marked ØVELSE; the crisis log verifies. ``CRISIS_PROPERTY_EXAMPLES`` sizes the run:
the default fits CI, ``make properties`` runs it at full size.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
)
from sqlmodel import col, select

from crisis.accounts import service as accounts
from crisis.clock import utcnow
from crisis.log.verify import verify_log
from crisis.settings import Settings
from notifiers.config import APPROVAL_KINDS, PUBLIC_KINDS, STAFF_KINDS
from notifiers.dispatcher import Dispatcher
from notifiers.models import MessageStatus, NotifyUpdate, OutboxMessage
from notifiers.rendering import EXERCISE_PREFIX
from streams.notification_flow import queue_plan
from tests.notif_sink import Hit, Sink
from tests.notifiers.test_notif_dispatcher import make_config

EXAMPLES = int(os.environ.get("CRISIS_PROPERTY_EXAMPLES", "15"))
EXERCISE = "ovelse-x"
PARTICIPANT_PATHS = {"/staff/1", "/leader/a", "/public/feed"}  # make_config's ovelse-x
PEOPLE = ("kari", "ola", "com", "root")
GROUPS = ("staff", "leaders", "unions", "families", "ministry", "media", "public")
#: Recipient path → group kind, as make_config lays them out.
PATH_GROUP = {
    "/staff/": "staff",
    "/fail/fb": "staff",
    "/alt/fb": "staff",
    "/union/": "unions",
    "/leader/": "leaders",
    "/fam/": "families",
    "/jd/": "ministry",
    "/media/": "media",
    "/public/": "public",
}


def _group_of(path: str) -> str | None:
    return next((g for prefix, g in PATH_GROUP.items() if path.startswith(prefix)), None)


class World:
    """One app, one sink, one event loop for a whole hypothesis run."""

    def __init__(self, database_url: str, tmp: Path) -> None:
        from web.app import create_app

        self.loop = asyncio.new_event_loop()
        settings_ = Settings(data_dir=tmp / "var", database_url=database_url, secret_key="t")
        self.app = create_app(settings_)
        self.sink = self.run(Sink().start())
        self.sink.delay["/staff/"] = 0.02
        self.sink.delay["/union/"] = 0.04
        self.config = make_config(self.sink, attempts_per_contact=1)
        self.app.state.notify_config = self.config
        self._lifespan = self.app.router.lifespan_context(self.app)
        self.run(self._lifespan.__aenter__())
        transport = httpx.ASGITransport(app=self.app)
        self.client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        self.headers = {
            "kari": self.run(self._user("kari", "operator", "agder-froland")),
            "ola": self.run(self._user("ola", "operator", "agder-froland")),
            "com": self.run(self._user("com", "communication", None)),
            "root": self.run(self._user("root", "admin", None)),
        }

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    async def _user(self, name: str, role: str, unit: str | None) -> dict[str, str]:
        async with self.app.state.sessions() as session:
            await accounts.add_user(session, name=name, role=role, password="pw123456", unit=unit)
            token = await accounts.create_token(session, name=name)
            await session.commit()
        return {"Authorization": f"Bearer {token}"}

    def close(self) -> None:
        self.run(self.client.aclose())
        self.run(self._lifespan.__aexit__(None, None, None))
        self.run(self.sink.stop())
        self.loop.close()


WORLD: World | None = None


class SafetyMachine(RuleBasedStateMachine):
    incidents = Bundle("incidents")
    updates = Bundle("updates")

    def __init__(self) -> None:
        super().__init__()
        assert WORLD is not None
        self.w = WORLD
        self.dispatchers: dict[int, list[Dispatcher]] = {}
        self.seqs = itertools.count(1000)  # each plan a new entry (a redelivery is a no-op)
        self.mine: dict[str, str] = {}  # this run's incidents by title (the world outlives it)

    def teardown(self) -> None:
        async def close() -> None:
            for ds in self.dispatchers.values():
                for d in ds:
                    await d.aclose()

        self.w.run(close())

    # --- actions ------------------------------------------------------------------------

    @initialize(target=incidents)
    def first_incident(self) -> str:
        return self._open(exercise=False, unit="agder-froland")

    @rule(
        target=incidents,
        exercise=st.booleans(),
        unit=st.sampled_from(["agder-froland", "agder-froland", "ringerike"]),
    )
    def open_incident(self, exercise: bool, unit: str) -> str:
        return self._open(exercise=exercise, unit=unit)

    def _open(self, *, exercise: bool, unit: str) -> str:
        # The title names the incident in every message about it, a playbook's too.
        title = f"Brann {secrets.token_hex(6)}"
        body: dict[str, Any] = {"type": "fire", "title": title, "unit": unit, "severity": 4}
        if exercise:
            body["exercise"] = EXERCISE
        r = self.w.run(
            self.w.client.post("/api/v1/incidents", json=body, headers=self.w.headers["root"])
        )
        assert r.status_code == 201, r.text
        self.mine[title] = r.json()["id"]
        return str(r.json()["id"])

    @rule(
        target=updates,
        incident=incidents,
        groups=st.lists(st.sampled_from(GROUPS), min_size=1, max_size=4, unique=True),
        author=st.sampled_from(PEOPLE),
        alarm=st.booleans(),
        approver=st.none() | st.sampled_from(PEOPLE),
    )
    def request_update(
        self, incident: str, groups: list[str], author: str, alarm: bool, approver: str | None
    ) -> str:
        body = {
            "incident_id": incident,
            "groups": groups,
            "kind": "alarm" if alarm else "update",
            "facts": {"title": self._title(incident), "known": "kjent", "actions": "tiltak"},
            "next_update_at": (utcnow() + timedelta(hours=1)).isoformat(),
        }
        r = self.w.run(
            self.w.client.post(
                "/api/v1/notifications/updates", json=body, headers=self.w.headers[author]
            )
        )
        assert r.status_code in (201, 403, 409), r.text
        update = str(r.json()["id"]) if r.status_code == 201 else ""
        if approver is not None:
            self.approve(update, approver)
        return update

    @rule(
        target=updates,
        incident=incidents,
        author=st.sampled_from(PEOPLE),
        approver=st.sampled_from(PEOPLE),
        shards=st.sampled_from([1, 2]),
    )
    def public_statement(self, incident: str, author: str, approver: str, shards: int) -> str:
        """What the press office does under pressure: media and public, approved, sent."""
        update = self.request_update(incident, ["media", "public"], author, False, approver)
        self.dispatch(shards, 30)
        return update

    def _title(self, incident: str) -> str:
        return next(title for title, iid in self.mine.items() if iid == incident)

    @rule(update=updates, approver=st.sampled_from(PEOPLE))
    def approve(self, update: str, approver: str) -> None:
        if not update:
            return
        url = f"/api/v1/notifications/updates/{update}/approve"
        r = self.w.run(self.w.client.post(url, headers=self.w.headers[approver]))
        assert r.status_code in (200, 403, 409), r.text
        if r.status_code == 200:
            assert r.json()["approved_by"] != r.json()["author"]

    @rule(update=consumes(updates), author=st.sampled_from(PEOPLE), cancel=st.booleans())
    def correct(self, update: str, author: str, cancel: bool) -> None:
        if not update:
            return
        body = {
            "facts": {"known": "Rettelse", "actions": "ingen"},
            "next_update_at": (utcnow() + timedelta(hours=1)).isoformat(),
            "cancel": cancel,
        }
        url = f"/api/v1/notifications/updates/{update}/correct"
        r = self.w.run(self.w.client.post(url, json=body, headers=self.w.headers[author]))
        assert r.status_code in (201, 403, 409), r.text

    @rule(
        incident=incidents,
        media_first=st.booleans(),
    )
    def playbook_plan(self, incident: str, media_first: bool) -> None:
        """The reactions worker's path: one update per plan item (staff and media apart)."""
        items = [
            {"id": "ansatte", "group": "staff", "after": "PT0S"},
            {"id": "media", "group": "media", "after": "PT0S"},
            {"id": "familie", "group": "families", "after": "PT0S"},
        ]
        if media_first:
            items.reverse()
        entry = {
            "incident_id": incident,
            "seq": next(self.seqs),
            "kind": "message",
            "actor": "rule:brann/notify",
            "data": {
                "playbook": "brann",
                "rule": "notify",
                "message_type": "notification_request",
                "plan": items,
            },
        }

        async def queue() -> None:
            async with self.w.app.state.sessions() as session:
                await queue_plan(session, entry=entry, config=self.w.config)
                await session.commit()

        self.w.run(queue())

    @rule(incident=incidents, who=st.sampled_from(PEOPLE), forge=st.sampled_from(["plan", "ack"]))
    def side_path(self, incident: str, who: str, forge: str) -> None:
        """A plan or a delivery receipt posted as a log entry is refused, whoever posts it."""
        body: dict[str, Any] = {"kind": "message", "text": "x"}
        if forge == "plan":
            body |= {"message_type": "notification_request", "plan": [{"group": "media"}]}
        else:
            body |= {"update_id": "u-f", "group": "staff", "recipient": "staff-1"}
            body["status"] = "acknowledged"
        url = f"/api/v1/incidents/{incident}/entries"
        r = self.w.run(self.w.client.post(url, json=body, headers=self.w.headers[who]))
        assert r.status_code in (403, 422), r.text

    @rule(shards=st.sampled_from([1, 2]), passes=st.sampled_from([1, 2, 30]))
    def dispatch(self, shards: int, passes: int) -> None:
        ds = self.dispatchers.setdefault(
            shards,
            [
                Dispatcher(self.w.app.state.sessions, self.w.config, shard=(k, shards))
                for k in range(shards)
            ],
        )

        async def go() -> None:
            for _ in range(passes):  # until quiet, at most ``passes``
                if not any(await asyncio.gather(*(d.run_once() for d in ds))):
                    return

        self.w.run(go())

    # --- invariants ---------------------------------------------------------------------

    @invariant()
    def rules_hold(self) -> None:
        self.w.run(self._check())

    async def _check(self) -> None:
        async with self.w.app.state.sessions() as session:
            rows = list(
                (await session.exec(select(OutboxMessage).order_by(col(OutboxMessage.id)))).all()
            )
            updates = {u.id: u for u in (await session.exec(select(NotifyUpdate))).all()}
            exercise_of = {m.incident_id: m.exercise or updates[m.update_id].exercise for m in rows}
            report = await verify_log(session)
        assert report.ok, str(report.breaks[:1])
        hits = [h for h in self.w.sink.hits if _group_of(h.path)]
        by_incident: dict[str, list[Hit]] = {}
        for h in hits:
            text = f"{h.body.get('title', '')} {h.body.get('message', '')}"
            incident = next((iid for title, iid in self.mine.items() if title in text), None)
            if incident is not None:
                by_incident.setdefault(incident, []).append(h)
        for incident, its_hits in by_incident.items():
            its_rows = [m for m in rows if m.incident_id == incident]
            # Exercise isolation: participants only, always marked.
            if exercise_of[incident]:
                for h in its_hits:
                    assert h.path in PARTICIPANT_PATHS, (incident, h.path)
                    assert str(h.body.get("message", "")).startswith(EXERCISE_PREFIX)
            # Two-person rule: every delivery to such a group has an approver, not its author.
            approved = {
                (m.recipient, m.incident_id)
                for m in its_rows
                if m.group in APPROVAL_KINDS
                and updates[m.update_id].approved_by
                and updates[m.update_id].approved_by != updates[m.update_id].author
            }
            for h in its_hits:
                if _group_of(h.path) in APPROVAL_KINDS:
                    recipient = _recipient(self.w, h.path)
                    assert (recipient, incident) in approved, (incident, h.path)
            # Staff first: some staff message of the incident, and every one written before
            # the first public one, was answered before any public message arrived.
            public_ids = [m.id or 0 for m in its_rows if m.group in PUBLIC_KINDS]
            public_hits = [h for h in its_hits if _group_of(h.path) in PUBLIC_KINDS]
            if not public_hits:
                continue
            assert public_ids, (incident, "a public hit without a public row")
            first_public = min(h.arrived for h in public_hits)
            staff_hits = [h for h in its_hits if _group_of(h.path) in STAFF_KINDS]
            assert any(0 < h.answered <= first_public for h in staff_hits), incident
            before = {
                m.recipient
                for m in its_rows
                if m.group in STAFF_KINDS
                and (m.id or 0) < min(public_ids)
                and m.status not in (MessageStatus.BLOCKED, MessageStatus.CANCELLED)
            }
            for recipient in before:
                told = [
                    h.answered
                    for h in staff_hits
                    if _recipient(self.w, h.path) == recipient and h.answered
                ]
                assert told and min(told) <= first_public, (incident, recipient)


def _recipient(w: World, path: str) -> str:
    for person in w.config.people:
        if any(c.url.endswith(path) for c in person.contacts):
            return person.id
    raise AssertionError(f"no recipient for {path}")


@pytest.mark.slow
def test_the_safety_rules_hold_on_random_sequences(database_url: str, tmp_path: Path) -> None:
    global WORLD
    WORLD = World(database_url, tmp_path)
    try:
        SafetyMachine.TestCase.settings = settings(
            max_examples=EXAMPLES,
            stateful_step_count=12,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        SafetyMachine.TestCase().runTest()
    finally:
        WORLD.close()
        WORLD = None
