"""The dispatcher: delivers the outbox through apprise, separate from the stream consumers.

One pass (:meth:`Dispatcher.run_once`) takes the due messages and applies, in order, the
gates that no template or playbook can bypass:

1. **Exercise isolation** — a message caused by an exercise goes only to a registered
   participant of that exercise (anyone else: ``blocked``, logged) and always starts with
   "ØVELSE ØVELSE ØVELSE". This is the last check before apprise.
2. **Two-person rule** — messages awaiting approval are never picked.
3. **Staff before the public** — a media/public message is ``held`` (logged once) until the
   incident's staff have been told, whichever update carried them (``_staff_told``).

Then it sends with bounded concurrency (at most ``delivery.concurrency`` targets in flight):
``json://``/``jsons://`` targets (our async plugin :class:`channels.AsyncJSON`) are called
directly by a pool of workers; every other target via ``apprise.Apprise.async_notify`` — one
call per distinct text, each target tagged with its outbox id so the per-target
``NotifyResult`` maps back. It records every attempt (table and crisis log). Failures back
off exponentially, then move to the alternate contact, then fail definitively. Sent messages
that need a confirmation and get none in time are escalated to the next person of the
group's escalation order. Run it as ``python -m notifiers``
(``crisis up`` starts it) or as an asyncio task (:meth:`Dispatcher.run`).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import apprise
from sqlalchemy import insert, true, update
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from crisis.clock import as_utc, utcnow
from crisis.exercises import service as exercise_service
from crisis.log.models import Incident
from notifiers import channels, logbook, rendering, service, sms, webhook
from notifiers.config import PUBLIC_KINDS, STAFF_KINDS, NotifyConfig
from notifiers.metrics import QUEUED_STATES, DispatcherMetrics
from notifiers.models import (
    FINAL,
    DeliveryAttempt,
    InboxMessage,
    MessageStatus,
    NotifyUpdate,
    OutboxMessage,
)

log = logging.getLogger("notifiers.dispatcher")

#: The collector's thresholds after :func:`freeze_startup_heap` (young, middle, old).
GC_THRESHOLDS = (7000, 10, 100)

#: Ids per ``UPDATE … WHERE id IN (…)`` (far below SQLite's and asyncpg's 32,766 parameters).
_IN_CHUNK = 2000


@dataclass
class _Send:
    message: OutboxMessage
    update: NotifyUpdate
    channel: str
    instance: Any | None
    url: str  # the contact's apprise URL ("" when there is no such contact)
    title: str
    body: str
    segments: int | None
    status: str = "failed"
    error: str | None = None
    elapsed: float = 0.0
    exercise: str | None = None


class _Budget:
    """A weighted semaphore: at most ``size`` targets in flight across apprise calls."""

    def __init__(self, size: int) -> None:
        self.size, self.used = size, 0
        self._cond = asyncio.Condition()

    async def acquire(self, n: int) -> None:
        async with self._cond:
            await self._cond.wait_for(lambda: self.used + n <= self.size)
            self.used += n

    async def release(self, n: int) -> None:
        async with self._cond:
            self.used -= n
            self._cond.notify_all()


@dataclass(frozen=True)
class _StaffGate:
    first_update_settled: bool  # the incident's first staff update: delivered or failed
    first_open: int | None  # the lowest id of a staff message still to settle


def _staff_told(gate: _StaffGate | None, m: OutboxMessage) -> bool:
    """The incident's staff have been told before ``m`` may go: its first staff update has
    settled (delivered, or failed on every contact), and so has every staff message written
    before ``m``, whichever update carries it."""
    if gate is None or m.id is None:
        return False
    return gate.first_update_settled and (gate.first_open is None or gate.first_open > m.id)


class Dispatcher:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        config: NotifyConfig,
        *,
        batch_size: int = 2000,
        record_every: int = 1000,
        clock: Callable[[], datetime] = utcnow,
        shard: tuple[int, int] = (0, 1),
        metrics: DispatcherMetrics | None = None,
        queue_every: float = 2.0,
    ) -> None:
        """``shard=(k, n)``: this process delivers the outbox rows with ``id % n == k``.

        The gates read the whole outbox, so n dispatcher processes keep every rule.
        ``metrics``: counted after each commit; the queue gauge is read at most every
        ``queue_every`` seconds.
        """
        if not 0 <= shard[0] < shard[1]:
            raise ValueError(f"shard {shard[0]}/{shard[1]}: need 0 <= k < n")
        channels.register_plugins()
        self.shard = shard
        self.sessions = sessions
        self.config = config
        self.batch_size = batch_size
        self.record_every = record_every
        self.clock = clock
        self.targets = channels.Targets()
        self._wake = asyncio.Event()
        self.metrics = metrics
        self.queue_every = queue_every
        self._queue_read_at = float("-inf")

    def warm(self) -> int:
        """Build every configured apprise target once (URL parsing is the costly part)."""
        return self.targets.warm([c.url for p in self.config.people for c in p.contacts])

    def wake(self) -> None:
        self._wake.set()

    async def aclose(self) -> None:
        await webhook.close()

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set; an error in one pass is logged, not fatal."""
        poll = self.config.delivery.poll_seconds
        while not stop.is_set():
            try:
                done = await self.run_once()
            except Exception:
                log.exception("dispatcher pass failed")
                if self.metrics is not None:
                    self.metrics.pass_errors.inc()
                done = 0
            await self._read_queue()
            if done:
                continue
            self._wake.clear()
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
            await asyncio.wait(waiters, timeout=poll, return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()

    async def _read_queue(self) -> None:
        """The queue gauge: this shard's outbox rows still waiting, by state."""
        loop = asyncio.get_running_loop()
        if self.metrics is None or loop.time() - self._queue_read_at < self.queue_every:
            return
        self._queue_read_at = loop.time()
        try:
            async with self.sessions() as session:
                found = dict(
                    (
                        await session.exec(
                            select(OutboxMessage.status, func.count())
                            .where(col(OutboxMessage.status).in_(QUEUED_STATES), self._mine())
                            .group_by(OutboxMessage.status)
                        )
                    ).all()
                )
        except Exception:
            log.exception("reading the outbox depth failed")
            return
        for state in QUEUED_STATES:
            self.metrics.queue.labels(state).set(int(found.get(state, 0)))

    def _count(self, outcomes: list[tuple[str, str, str]]) -> None:
        if self.metrics is not None:
            for group, channel, outcome in outcomes:
                self.metrics.messages.labels(group, channel, outcome).inc()

    # --- one pass ------------------------------------------------------------------------

    async def run_once(self) -> int:
        """Gate, send and record the due messages; escalate unacknowledged ones."""
        sends = await self._prepare()
        if sends:
            await self._deliver_and_record(sends)
        escalated = await self._escalate()
        return len(sends) + escalated

    async def _deliver_and_record(self, sends: list[_Send]) -> None:
        """Send the pass and record the results while the rest is still being sent.

        Finished targets are recorded in slices of ``record_every`` (one transaction each, in
        order) as they come in, so the database work overlaps the HTTP work instead of
        following it. Delivery itself has no barrier between slices. The pass returns when
        every attempt is recorded; if recording fails, it still waits for the delivery to end
        (nothing of this pass may still be in flight when the next pass selects) and raises.
        """
        done: list[_Send] = []
        wake = asyncio.Event()
        step = self.record_every

        def finished(s: _Send) -> None:
            done.append(s)
            if len(done) >= step:
                wake.set()

        delivery = asyncio.ensure_future(self._deliver(sends, finished))
        delivery.add_done_callback(lambda _: wake.set())
        try:
            while True:
                if len(done) < step and not delivery.done():
                    await wake.wait()
                    wake.clear()
                    continue
                if not done:
                    break  # delivery ended and everything is recorded
                batch, done[:] = done[:], []
                await self._record(batch)
        finally:
            if not delivery.done():
                await asyncio.wait([delivery])
        delivery.result()  # an unexpected error in delivery (targets' own errors are results)

    async def _prepare(self) -> list[_Send]:
        now = self.clock()
        async with self.sessions() as session:
            due = (
                await session.exec(
                    select(OutboxMessage)
                    .where(
                        col(OutboxMessage.status).in_(
                            [MessageStatus.PENDING.value, MessageStatus.HELD.value]
                        ),
                        col(OutboxMessage.next_attempt_at) <= now,
                        self._mine(),
                    )
                    .order_by(col(OutboxMessage.id))
                    .limit(self.batch_size)
                )
            ).all()
            if not due:
                return []
            updates = {
                u.id: u
                for u in (
                    await session.exec(
                        select(NotifyUpdate).where(
                            col(NotifyUpdate.id).in_({m.update_id for m in due})
                        )
                    )
                ).all()
            }
            incident_exercise = dict(
                (
                    await session.exec(
                        select(Incident.id, Incident.exercise).where(
                            col(Incident.id).in_({m.incident_id for m in due})
                        )
                    )
                ).all()
            )
            exercises = {
                e
                for m in due
                if (
                    e := m.exercise
                    or updates[m.update_id].exercise
                    or incident_exercise.get(m.incident_id)
                )
            }
            # Registered through the API: read each pass, so a change holds at once.
            registered = await exercise_service.person_participants(session, exercise_ids=exercises)
            staff_gate = await self._staff_gate(
                session, {m.incident_id for m in due if m.group in PUBLIC_KINDS}
            )
            receipts: list[logbook.Receipt] = []
            gated: list[tuple[str, str, str]] = []
            sends: list[_Send] = []
            urls_in_pass: set[str] = set()
            for m in due:
                update = updates[m.update_id]
                exercise = m.exercise or update.exercise or incident_exercise.get(m.incident_id)
                # 1. exercise isolation: the last gate before apprise.
                if exercise and not self.config.is_participant(exercise, m.recipient, registered):
                    m.status = MessageStatus.BLOCKED.value
                    m.last_error = f"exercise {exercise}: {m.recipient} is not a participant"
                    session.add(m)
                    receipts.append(service._receipt(m, update, "blocked", error=m.last_error))
                    gated.append((m.group, "none", "blocked"))
                    continue
                # 2. two-person rule (defence in depth: awaiting_approval is never selected, but
                #    a row written past request_update must not slip through either).
                if m.group in service.APPROVAL_KINDS and not update.approved_by:
                    m.status = MessageStatus.AWAITING_APPROVAL.value
                    update.approval_required = True
                    session.add_all([m, update])
                    receipts.append(
                        service._receipt(
                            m, update, "held", error="venter på godkjenning (to-personsregel)"
                        )
                    )
                    gated.append((m.group, "none", "awaiting_approval"))
                    continue
                # 3. staff are never told after the public: whichever update carries them.
                if m.group in PUBLIC_KINDS and not _staff_told(staff_gate.get(m.incident_id), m):
                    if m.status != MessageStatus.HELD:
                        m.status = MessageStatus.HELD.value
                        session.add(m)
                        receipts.append(
                            service._receipt(
                                m,
                                update,
                                "held",
                                error="venter til ansatte har fått meldingen / "
                                "waiting until the incident's staff have been told",
                            )
                        )
                        gated.append((m.group, "none", "held"))
                    continue
                send = self._build(m, update, exercise)
                if send.instance is not None:
                    if send.url in urls_in_pass:
                        continue  # one target instance per pass; the next pass takes it
                    urls_in_pass.add(send.url)
                sends.append(send)
            if receipts:
                await logbook.write(session, receipts)
            await session.commit()
        self._count(gated)
        return sends

    def _mine(self) -> Any:
        k, n = self.shard
        return col(OutboxMessage.id) % n == k if n > 1 else true()

    async def _staff_gate(
        self, session: AsyncSession, incident_ids: set[str]
    ) -> dict[str, _StaffGate]:
        """Per incident with staff messages: whether its first staff update has settled, and
        the id of its first unsettled staff message.

        Read from the whole outbox (every update and shard), so no update, path or shard
        can carry a public message past the incident's staff.
        """
        if not incident_ids:
            return {}
        staff = (
            col(OutboxMessage.incident_id).in_(incident_ids),
            col(OutboxMessage.group).in_(STAFF_KINDS),
        )
        unsettled = col(OutboxMessage.status).not_in([s.value for s in FINAL])
        by_incident = (OutboxMessage.incident_id, func.min(OutboxMessage.id))
        first = await session.exec(select(*by_incident).where(*staff).group_by(by_incident[0]))
        first_ids = [int(i) for _, i in first.all() if i is not None]
        if not first_ids:
            return {}
        first_update = dict(
            (
                await session.exec(
                    select(OutboxMessage.incident_id, OutboxMessage.update_id).where(
                        col(OutboxMessage.id).in_(first_ids)
                    )
                )
            ).all()
        )
        open_ids: dict[str, int] = {
            iid: int(i)
            for iid, i in (
                await session.exec(
                    select(*by_incident).where(*staff, unsettled).group_by(by_incident[0])
                )
            ).all()
            if i is not None
        }
        open_updates = set(
            (
                await session.exec(
                    select(OutboxMessage.update_id)
                    .where(*staff, unsettled)
                    .where(col(OutboxMessage.update_id).in_(set(first_update.values())))
                    .distinct()
                )
            ).all()
        )
        return {
            iid: _StaffGate(update not in open_updates, open_ids.get(iid))
            for iid, update in first_update.items()
        }

    def _build(self, m: OutboxMessage, update: NotifyUpdate, exercise: str | None) -> _Send:
        body, title = m.body, m.title
        if exercise and not body.startswith(rendering.EXERCISE_PREFIX):
            body = f"{rendering.EXERCISE_PREFIX}\n{body}"
            title = f"{rendering.EXERCISE_PREFIX}: {title}"
        try:
            contact = self.config.person(m.recipient).contacts[m.contact_index]
        except (KeyError, IndexError):
            return _Send(m, update, "unknown", None, "", title, body, None, error="no such contact")
        segments = None
        if contact.channel == "sms":
            body = sms.fit_sms(body, self.config.delivery.sms_max_segments)
            segments = sms.count(body).segments
        instance = self.targets.get(contact.url)
        send = _Send(m, update, contact.channel, instance, contact.url, title, body, segments)
        send.exercise = exercise
        if instance is None:
            send.error = "invalid or unsupported apprise URL"
        return send

    async def _deliver(
        self, sends: list[_Send], finished: Callable[[_Send], None] = lambda s: None
    ) -> None:
        """Send with at most ``delivery.concurrency`` targets in flight.

        Targets of our natively async plugins (:class:`channels.AsyncJSON`, no apprise
        ``retry=``) are called directly by a pool of workers: apprise's per-target machinery
        (a task, a timer, a retry runner, a log capture and a result object per target) would
        cost more CPU than the HTTP post itself. Every other target goes through
        ``apprise.Apprise.async_notify``: one call per distinct (title, body, e-mail), chunked by a
        quarter of the budget so that one slow target holds back only its chunk; the direct
        workers then leave that quarter free.
        """
        concurrency = self.config.delivery.concurrency
        budget = _Budget(concurrency)
        size = max(1, concurrency // 4)
        direct: list[_Send] = []
        by_text: dict[tuple[str, str, bool], list[_Send]] = defaultdict(list)
        for s in sends:
            if s.instance is None:
                finished(s)  # nothing to send to: recorded as failed (its error is set)
                continue
            if channels.is_direct(s.instance):
                direct.append(s)
            else:
                by_text[(s.title, s.body, channels.is_email(s.instance))].append(s)
        calls = [
            (title, body, email, group[i : i + size])
            for (title, body, email), group in by_text.items()
            for i in range(0, len(group), size)
        ]

        async def call(title: str, body: str, email: bool, chunk: list[_Send]) -> None:
            await budget.acquire(len(chunk))
            try:
                await self._call(title, body, chunk, email=email)
                for s in chunk:
                    finished(s)
            finally:
                await budget.release(len(chunk))

        queue = iter(direct)

        async def worker() -> None:
            await budget.acquire(1)
            try:
                for s in queue:
                    await self._call_direct(s)
                    finished(s)
            finally:
                await budget.release(1)

        workers = min(len(direct), concurrency - size if calls else concurrency) or (
            1 if direct else 0
        )
        await asyncio.gather(*(call(*c) for c in calls), *(worker() for _ in range(workers)))

    async def _call_direct(self, s: _Send) -> None:
        """One target of a natively async plugin: its own socket timeouts, its own outcome."""
        instance = s.instance
        assert instance is not None
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            ok = await instance.async_notify(body=s.body, title=s.title)
        except Exception as exc:  # a plugin crash fails this target, it does not lose it
            ok = False
            instance.crisis_outcome = ("failed", f"{type(exc).__name__}: {exc}")
        s.elapsed = loop.time() - started
        if ok:
            s.status, s.error = "sent", None
        else:
            s.status, s.error = instance.crisis_outcome or ("failed", "delivery failed")

    async def _call(
        self, title: str, body: str, chunk: list[_Send], *, email: bool = False
    ) -> None:
        ap = apprise.Apprise()
        by_tag: dict[str, _Send] = {}
        for s in chunk:
            tag = f"m{s.message.id}"
            assert s.instance is not None
            s.instance.tags = {tag}
            by_tag[tag] = s
            ap.add(s.instance)
        try:
            # No apprise call timeout: it doubles apprise's per-target cost; each target has
            # its own socket timeouts (apprise's cto/rto URL parameters, 4 s by default).
            if email:
                # Our text is plain: apprise would send it as live HTML and flatten its lines.
                result = await ap.async_notify(
                    body=rendering.email_html(body),
                    title=title,
                    body_format=apprise.NotifyFormat.HTML,
                )
            else:
                result = await ap.async_notify(body=body, title=title)
        except Exception as exc:  # an apprise crash fails the chunk, it does not lose it
            for s in chunk:
                s.status, s.error = "failed", f"apprise: {exc}"
            return
        seen: set[str] = set()
        for r in result:
            for tag in r.tag:
                if tag not in by_tag:
                    continue
                s = by_tag[tag]
                seen.add(tag)
                s.elapsed = float(r.elapsed)
                if r.status == apprise.AppriseResultStatus.SUCCESS:
                    s.status, s.error = "sent", None
                elif r.status == apprise.AppriseResultStatus.TIMEOUT:
                    s.status, s.error = "timed_out", f"no answer in {r.elapsed:.1f}s"
                else:
                    outcome = getattr(s.instance, "crisis_outcome", None)
                    if outcome:
                        s.status, s.error = outcome
                    else:
                        s.status, s.error = "failed", _first_warning(r) or "delivery failed"
        for tag, s in by_tag.items():
            if tag not in seen:
                s.status, s.error = "failed", "apprise reported no result for this target"

    async def _record(self, sends: list[_Send]) -> None:
        """Every attempt: a row, a log entry, and the message's next state (bulk statements)."""
        now = self.clock()
        d = self.config.delivery
        changes: dict[tuple[tuple[str, Any], ...], list[int]] = defaultdict(list)
        attempts: list[dict[str, Any]] = []
        receipts: list[logbook.Receipt] = []
        inbox: list[dict[str, Any]] = []
        outcomes: list[tuple[str, str, str]] = []
        for s in sends:
            m = s.message
            assert m.id is not None
            total = m.total_attempts + 1
            if s.status == "sent" and channels.is_inbox(s.instance):
                inbox.append(_inbox_row(s, now))
            attempts.append(
                {
                    "message_id": m.id,
                    "attempt": total,
                    "contact_index": m.contact_index,
                    "channel": s.channel,
                    "status": s.status,
                    "error": s.error,
                    "segments": s.segments,
                    "elapsed": s.elapsed,
                    "at": now,
                }
            )
            extra: dict[str, Any] = {"contact": m.contact_index}
            if s.segments is not None:
                extra["segments"] = s.segments
            receipts.append(
                service.receipt(
                    s.update,
                    incident_id=m.incident_id,
                    message_id=m.id,
                    group=m.group,
                    recipient=m.recipient,
                    status=s.status,
                    attempt=total,
                    channel=s.channel,
                    error=s.error,
                    **extra,
                )
            )
            # Only the columns that change: rows with equal changes share one UPDATE … IN.
            change: dict[str, Any] = {"total_attempts": total, "last_error": s.error}
            if s.status == "sent":
                change.update(status=MessageStatus.SENT.value, sent_at=now, channel=s.channel)
                if m.ack_code:
                    change["ack_deadline"] = now + timedelta(seconds=d.ack_timeout_seconds)
            else:
                tries = m.attempts + 1
                # a held public message that was released goes back to pending
                change.update(status=MessageStatus.PENDING.value, attempts=tries)
                if tries < d.attempts_per_contact and s.instance is not None:
                    delay = min(d.backoff_max_seconds, d.backoff_seconds * 2 ** (tries - 1))
                    change["next_attempt_at"] = now + timedelta(seconds=delay)
                elif m.contact_index + 1 < self._contacts(m):
                    change.update(
                        contact_index=m.contact_index + 1, attempts=0, next_attempt_at=now
                    )
                else:
                    change["status"] = MessageStatus.FAILED.value
            changes[tuple(sorted(change.items()))].append(m.id)
            outcome = "retry" if change["status"] == MessageStatus.PENDING else change["status"]
            outcomes.append((m.group, s.channel, outcome))
        table = OutboxMessage.__table__  # type: ignore[attr-defined]
        async with self.sessions() as session:
            for values, ids in changes.items():
                for i in range(0, len(ids), _IN_CHUNK):
                    await session.exec(
                        update(table)
                        .where(table.c.id.in_(ids[i : i + _IN_CHUNK]))
                        .values(dict(values))
                    )
            await session.exec(insert(DeliveryAttempt.__table__), params=attempts)  # type: ignore[attr-defined]
            if inbox:
                await session.exec(insert(InboxMessage.__table__), params=inbox)  # type: ignore[attr-defined]
            await logbook.write(session, receipts)
            await session.commit()
        if self.metrics is not None:
            self._count(outcomes)
            for s in sends:
                if s.status == "sent" and s.message.escalated_from is None:
                    asked = s.update.approved_at or s.update.created_at
                    waited = (now - as_utc(asked)).total_seconds()
                    self.metrics.delivery_seconds.labels(s.message.group).observe(max(0.0, waited))

    def _contacts(self, m: OutboxMessage) -> int:
        try:
            return len(self.config.person(m.recipient).contacts)
        except KeyError:
            return 0

    async def _escalate(self) -> int:
        """Alarms not acknowledged in time go to the next person of the group's order."""
        now = self.clock()
        async with self.sessions() as session:
            overdue = (
                await session.exec(
                    select(OutboxMessage).where(
                        OutboxMessage.status == MessageStatus.SENT.value,
                        col(OutboxMessage.ack_code).is_not(None),
                        col(OutboxMessage.escalated).is_(False),
                        col(OutboxMessage.ack_deadline) <= now,
                        self._mine(),
                    )
                )
            ).all()
            if not overdue:
                return 0
            approvals = await service.db_translation_approvals(session)
            # An ended exercise closed its incidents: their unacknowledged alarms go no further.
            ended_drills = set(
                (
                    await session.exec(
                        select(Incident.id).where(
                            col(Incident.id).in_({m.incident_id for m in overdue}),
                            col(Incident.exercise).is_not(None),
                            Incident.status == "closed",
                        )
                    )
                ).all()
            )
            receipts: list[logbook.Receipt] = []
            for m in overdue:
                update = await session.get(NotifyUpdate, m.update_id)
                assert update is not None and m.id is not None
                m.escalated = True
                session.add(m)
                already = set(
                    (
                        await session.exec(
                            select(OutboxMessage.recipient).where(
                                OutboxMessage.update_id == m.update_id
                            )
                        )
                    ).all()
                )
                try:
                    group = self.config.group(m.group_id)
                except KeyError:
                    group = None
                nxt = (
                    service.escalation_next(group, m.recipient, already)
                    if group and m.incident_id not in ended_drills
                    else None
                )
                error = f"ikke bekreftet innen fristen / not acknowledged by {m.ack_deadline}"
                receipts.append(
                    service._receipt(
                        m,
                        update,
                        "timed_out",
                        channel=m.channel,
                        error=error,
                        escalated_to=nxt,
                    )
                )
                if nxt is None:
                    continue
                person = self.config.person(nxt)
                target = service.Target(
                    recipient=nxt,
                    group=m.group,
                    group_id=m.group_id,
                    languages=person.languages,
                    ack_required=True,
                )
                row = service.message_values(
                    service._Renderer(self.config, update), target, approvals, escalated_from=m.id
                )
                (new_id,) = await service.insert_messages(session, [row])
                receipts.append(
                    service.receipt(
                        update,
                        incident_id=m.incident_id,
                        message_id=new_id,
                        group=m.group,
                        recipient=nxt,
                        status="queued",
                        escalated_from=m.recipient,
                    )
                )
            await logbook.write(session, receipts)
            await session.commit()
        if self.metrics is not None:
            for m in overdue:
                self.metrics.escalations.labels(m.group).inc()
        return len(overdue)


def _inbox_row(s: _Send, now: datetime) -> dict[str, Any]:
    """The local inbox's copy of a delivered message: what the recipient would have read."""
    m = s.message
    return {
        "message_id": m.id,
        "update_id": m.update_id,
        "incident_id": m.incident_id,
        "exercise": s.exercise or m.exercise or s.update.exercise,
        "recipient": m.recipient,
        "group": m.group,
        "channel": s.channel,
        "address": s.url[:300],
        "subject": s.title[:300],
        "body": s.body,
        "at": now,
    }


def freeze_startup_heap() -> None:
    """Exempt what start-up built (config, apprise targets, modules) from garbage collection
    and set :data:`GC_THRESHOLDS`. Call once, after :meth:`Dispatcher.warm`
    (``python -m notifiers`` does).

    Start-up objects live as long as the process, yet every full collection walked them.
    Once they are frozen, the default thresholds would run a full collection about every
    ten young ones, and a young collection every 700 allocations promotes the objects of
    every request still in flight; the larger thresholds avoid both. Objects without
    reference cycles are still freed at once by reference counting.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _first_warning(result: Any) -> str | None:
    try:
        for entry in result.logs():
            message = getattr(entry, "message", None) or str(entry)
            if message:
                return str(message)[:500]
    except Exception:  # logs are best effort
        return None
    return None
