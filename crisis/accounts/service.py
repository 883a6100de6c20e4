"""Users, roles, scopes, API tokens, browser sessions and the login throttle.

Passwords are hashed with argon2id (argon2-cffi); API tokens and session ids are 256-bit
random secrets of which only the SHA-256 is stored, so a leaked database yields no usable
credential. Password checks run in a small thread pool (``PasswordGate``), never in the
event loop; failed logins are counted per account name and client address in the database
(``LoginThrottle``), so the limit holds across web processes and restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import math
import os
import secrets
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import case, delete, func, null, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from crisis.accounts.models import ApiToken, LoginThrottle, User, WebSession
from crisis.clock import utcnow
from crisis.domain.vocabulary import LEVEL_ORDER, Level, Role
from crisis.log.models import Incident
from crisis.log.tables import TABLES
from crisis.settings import Settings
from crisis.store.recorder import recorder_for

log = logging.getLogger("crisis.accounts")

_hasher = PasswordHasher()

#: Roles that see every unit's incidents.
NATIONAL_ROLES = frozenset({Role.ADMIN, Role.KDI, Role.COMMUNICATION, Role.MINISTRY})

#: A session's or token's last use is written at most this often (not on every request).
TOUCH_EVERY = timedelta(minutes=1)

#: The nice value of the password-check threads.
CHECK_NICE = 10

#: Seconds a login refused for a full password-check queue is asked to wait.
BUSY_RETRY_AFTER = 1


class AccountError(ValueError):
    pass


class LoginRefused(Exception):
    """A login not checked at all; ``retry_after`` seconds until one may be."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


class LoginThrottled(LoginRefused):
    """Too many failed logins of this account name or from this address."""


class LoginBusy(LoginRefused):
    """Too many logins already being checked or waiting for a check in this process."""


def hash_password(password: str) -> str:
    return _hasher.hash(password)


@functools.cache
def _dummy_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(16))


def _verify(password_hash: str | None, password: str) -> bool:
    """argon2 verification; without a hash (unknown or disabled user) a dummy one is checked,
    so that names cannot be probed by timing."""
    try:
        return _hasher.verify(password_hash or _dummy_hash(), password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _lower_priority() -> None:
    """Lower this thread's CPU priority (on Linux a thread's nice value is its own, and the
    threads argon2 starts inherit it): the event loop's thread then wins the CPU."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), CHECK_NICE)


class PasswordGate:
    """Runs password checks in ``concurrency`` threads; with ``max_pending`` logins already
    checked or waiting, :meth:`ticket` refuses at once (``LoginBusy``) instead of queueing."""

    def __init__(self, *, concurrency: int, max_pending: int) -> None:
        self._concurrency = concurrency
        self._max_pending = max_pending
        self._pool: ThreadPoolExecutor | None = None
        self.pending = 0

    @contextmanager
    def ticket(self) -> Iterator[_Ticket]:
        if self.pending >= self._max_pending:
            raise LoginBusy(BUSY_RETRY_AFTER)
        self.pending += 1
        ticket = _Ticket(self)
        try:
            yield ticket
        finally:
            if not ticket.started:
                self.pending -= 1

    def _release(self, _: object) -> None:
        self.pending -= 1

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                self._concurrency, thread_name_prefix="argon2", initializer=_lower_priority
            )
        return self._pool


class _Ticket:
    def __init__(self, gate: PasswordGate) -> None:
        self.gate = gate
        self.started = False

    async def verify(self, password_hash: str | None, password: str) -> bool:
        self.started = True
        future = asyncio.get_running_loop().run_in_executor(
            self.gate._executor(), _verify, password_hash, password
        )
        # The place in the queue is given back when the check ends, not when a client that
        # went away cancels its request: the thread pool works on regardless.
        future.add_done_callback(self.gate._release)
        return await asyncio.shield(future)


@dataclass(frozen=True)
class LoginPolicy:
    """How many failures an account name and a client address may have before each must
    wait, and how long: ``backoff`` · 2^(failures − limit), at most ``backoff_max``."""

    max_failures: int
    address_max_failures: int
    backoff: float
    backoff_max: float
    window: float

    @classmethod
    def of(cls, settings: Settings) -> LoginPolicy:
        return cls(
            max_failures=settings.login_max_failures,
            address_max_failures=settings.login_address_max_failures,
            backoff=settings.login_backoff_seconds,
            backoff_max=settings.login_backoff_max_seconds,
            window=settings.login_failure_window_seconds,
        )

    def wait(self, attempts: int, limit: int) -> timedelta:
        exponent = min(attempts - limit, 60)
        return timedelta(seconds=min(self.backoff_max, self.backoff * 2**exponent))


def _throttle_keys(name: str, address: str) -> tuple[str, str]:
    return f"user:{name[:150]}", f"addr:{address[:150]}"


def _retry_after(until: datetime, now: datetime) -> int:
    return max(1, math.ceil((until - now).total_seconds()))


async def _claim(
    session: AsyncSession, *, key: str, limit: int, policy: LoginPolicy, now: datetime
) -> int:
    """Count one attempt for ``key`` (returned: its attempts now), locking it once ``limit``
    is reached; LoginThrottled while it is locked. The conditional UPDATE makes concurrent
    claims of one key wait for each other."""
    stale = now - timedelta(seconds=policy.window)
    since = func.coalesce(LoginThrottle.locked_until, LoginThrottle.last_attempt_at)
    table = LoginThrottle.__table__  # type: ignore[attr-defined]
    for _ in range(3):
        result = await session.exec(
            update(LoginThrottle)
            .where(
                col(LoginThrottle.key) == key,
                (col(LoginThrottle.locked_until).is_(None))
                | (col(LoginThrottle.locked_until) <= now),
            )
            .values(
                attempts=case((since < stale, 1), else_=col(LoginThrottle.attempts) + 1),
                locked_until=case((since < stale, null()), else_=LoginThrottle.locked_until),
                last_attempt_at=now,
            )
            .returning(table.c.attempts)
        )
        attempts = result.scalar_one_or_none()
        if attempts is None:
            insert = recorder_for(session.get_bind().dialect.name, TABLES).upsert
            result = await session.exec(
                insert(table)
                .values(key=key, attempts=1, last_attempt_at=now, locked_until=None)
                .on_conflict_do_nothing(index_elements=["key"])
                .returning(table.c.attempts)
            )
            attempts = result.scalar_one_or_none()
        if attempts is None:
            locked_until = (
                await session.exec(
                    select(LoginThrottle.locked_until).where(LoginThrottle.key == key)
                )
            ).first()
            if locked_until is not None and locked_until > now:
                raise LoginThrottled(_retry_after(locked_until, now))
            continue  # inserted or unlocked by someone else meanwhile: try again
        if attempts >= limit:
            await session.exec(
                update(LoginThrottle)
                .where(col(LoginThrottle.key) == key)
                .values(locked_until=now + policy.wait(attempts, limit))
            )
        return int(attempts)
    raise LoginThrottled(1)  # pragma: no cover  (three lost races in a row)


async def _release(session: AsyncSession, *, key: str, limit: int) -> None:
    """Take back one counted attempt (it succeeded, or was never checked)."""
    await session.exec(
        update(LoginThrottle)
        .where(col(LoginThrottle.key) == key, col(LoginThrottle.attempts) > 0)
        .values(
            attempts=col(LoginThrottle.attempts) - 1,
            locked_until=case(
                (col(LoginThrottle.attempts) - 1 < limit, null()), else_=LoginThrottle.locked_until
            ),
        )
    )


async def login(
    session: AsyncSession,
    *,
    name: str,
    password: str,
    address: str,
    gate: PasswordGate,
    policy: LoginPolicy,
) -> User | None:
    """The user whose name and password these are, else None (a failure, counted).

    Raises ``LoginThrottled`` while the name or the address must wait and ``LoginBusy`` when
    the gate is full; neither checks the password. Commits its own transactions: the attempt
    is stored before the check (no connection is held while it waits for a thread) and a
    success resets the account's counter.
    """
    account, addr = _throttle_keys(name, address)
    limits = {account: policy.max_failures, addr: policy.address_max_failures}
    try:
        with gate.ticket() as ticket:
            now = utcnow()
            try:
                counted = {
                    key: await _claim(session, key=key, limit=limit, policy=policy, now=now)
                    for key, limit in limits.items()
                }
            except LoginThrottled:
                await session.rollback()
                raise
            user = (await session.exec(select(User).where(User.name == name))).first()
            await session.commit()
            known = user is not None and user.active
            try:
                ok = await ticket.verify(user.password_hash if user and known else None, password)
            except BaseException:
                for key, limit in limits.items():
                    await _release(session, key=key, limit=limit)
                await session.commit()
                raise
    except LoginThrottled as exc:
        log.warning(
            "login refused: account %r from %s must wait %d s", name, address, exc.retry_after
        )
        raise
    except LoginBusy:
        log.warning("login refused: account %r from %s: too many logins at once", name, address)
        raise
    if ok and user is not None:
        await session.exec(delete(LoginThrottle).where(col(LoginThrottle.key) == account))
        await _release(session, key=addr, limit=limits[addr])
        await session.commit()
        return user
    # A wait is counted from the failure's answer, not from when the check began.
    failed_at = utcnow()
    for key, limit in limits.items():
        if counted[key] >= limit:
            until = failed_at + policy.wait(counted[key], limit)
            await session.exec(
                update(LoginThrottle)
                .where(col(LoginThrottle.key) == key, col(LoginThrottle.locked_until) < until)
                .values(locked_until=until)
            )
    await session.commit()
    log.warning(
        "login failed: account %r from %s (failure %d of the account, %d of the address)",
        name,
        address,
        counted[account],
        counted[addr],
    )
    return None


async def add_user(
    session: AsyncSession,
    *,
    name: str,
    role: str,
    password: str,
    unit: str | None = None,
    region: str | None = None,
) -> User:
    try:
        Role(role)
    except ValueError:
        known = ", ".join(r.value for r in Role)
        raise AccountError(f"unknown role {role!r} (known: {known})") from None
    _check_new_password(password)
    if role == Role.OPERATOR and not unit:
        raise AccountError("an operator belongs to a unit: give --unit")
    if role == Role.REGION and not region:
        raise AccountError("a region user belongs to a region: give --region")
    existing = (await session.exec(select(User).where(User.name == name))).first()
    if existing is not None:
        raise AccountError(f"user {name!r} exists already")
    user = User(
        name=name, role=role, unit=unit, region=region, password_hash=hash_password(password)
    )
    session.add(user)
    await session.flush()
    return user


def _check_new_password(password: str) -> None:
    if len(password) < 8:
        raise AccountError("a password has at least 8 characters")


async def _named(session: AsyncSession, name: str) -> User:
    user = (await session.exec(select(User).where(User.name == name))).first()
    if user is None:
        raise AccountError(f"no user {name!r}")
    return user


async def end_sessions(session: AsyncSession, *, user_id: int) -> int:
    """Delete every browser session of a user; how many there were."""
    result = await session.exec(delete(WebSession).where(col(WebSession.user_id) == user_id))
    return int(result.rowcount or 0)


async def set_password(session: AsyncSession, *, name: str, password: str) -> int:
    """A new password for ``name``; ends the user's sessions (returned: how many) and lifts
    the account's login throttle."""
    _check_new_password(password)
    user = await _named(session, name)
    assert user.id is not None
    user.password_hash = hash_password(password)
    session.add(user)
    account, _ = _throttle_keys(name, "")
    await session.exec(delete(LoginThrottle).where(col(LoginThrottle.key) == account))
    return await end_sessions(session, user_id=user.id)


async def set_active(session: AsyncSession, *, name: str, active: bool) -> int:
    """Enable or disable ``name``. A disabled user cannot log in, their sessions are ended
    (returned: how many) and their tokens are refused until they are enabled again."""
    user = await _named(session, name)
    assert user.id is not None
    user.active = active
    session.add(user)
    return 0 if active else await end_sessions(session, user_id=user.id)


# --- browser sessions -----------------------------------------------------------------


async def open_session(
    session: AsyncSession, *, user: User, lifetime: timedelta, replaces: str | None = None
) -> str:
    """A new browser session for ``user``: the id for the cookie (only its hash is stored).
    ``replaces``: the id the browser had before, ended now; expired sessions are removed."""
    assert user.id is not None
    now = utcnow()
    if replaces:
        await close_session(session, session_id=replaces)
    await session.exec(delete(WebSession).where(col(WebSession.expires_at) <= now))
    session_id = secrets.token_urlsafe(32)
    session.add(
        WebSession(
            id_hash=hash_token(session_id),
            user_id=user.id,
            created_at=now,
            last_seen_at=now,
            expires_at=now + lifetime,
        )
    )
    await session.flush()
    return session_id


async def close_session(session: AsyncSession, *, session_id: str) -> None:
    await session.exec(delete(WebSession).where(col(WebSession.id_hash) == hash_token(session_id)))


async def user_for_session(
    session: AsyncSession, *, session_id: str, lifetime: timedelta
) -> User | None:
    """The active user of a live session. A session used again after ``TOUCH_EVERY`` is
    extended to ``lifetime`` from now (a change the caller commits)."""
    row = (
        await session.exec(
            select(User, WebSession)
            .join(WebSession, col(WebSession.user_id) == User.id)
            .where(WebSession.id_hash == hash_token(session_id))
        )
    ).first()
    now = utcnow()
    if row is None or row[1].expires_at <= now or not row[0].active:
        return None
    user, web_session = row
    if now - web_session.last_seen_at >= TOUCH_EVERY:
        web_session.last_seen_at = now
        web_session.expires_at = now + lifetime
        session.add(web_session)
    return user


# --- API tokens -----------------------------------------------------------------------


async def create_token(
    session: AsyncSession, *, name: str, label: str = "", expires_days: int | None = None
) -> str:
    """A new bearer token for user ``name``; the secret is returned once and never stored.
    ``expires_days``: None or 0, no expiry."""
    user = await _named(session, name)
    assert user.id is not None
    token = "crisis_" + secrets.token_urlsafe(32)
    expires_at = utcnow() + timedelta(days=expires_days) if expires_days else None
    session.add(
        ApiToken(user_id=user.id, token_hash=hash_token(token), label=label, expires_at=expires_at)
    )
    await session.flush()
    return token


async def user_for_token(session: AsyncSession, token: str) -> User | None:
    """The active user of a token neither revoked nor expired. Its last use is recorded at
    most every ``TOUCH_EVERY`` (a change the caller commits)."""
    row = (
        await session.exec(
            select(User, ApiToken)
            .join(ApiToken, col(ApiToken.user_id) == User.id)
            .where(ApiToken.token_hash == hash_token(token), ApiToken.revoked == False)  # noqa: E712
        )
    ).first()
    now = utcnow()
    if row is None or not row[0].active:
        return None
    user, api_token = row
    if api_token.expires_at is not None and api_token.expires_at <= now:
        return None
    if api_token.last_used_at is None or now - api_token.last_used_at >= TOUCH_EVERY:
        api_token.last_used_at = now
        session.add(api_token)
    return user


@dataclass(frozen=True)
class TokenInfo:
    """What ``crisis token list`` shows of a token (never its secret)."""

    id: int
    user: str
    label: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked: bool

    def state(self, now: datetime) -> str:
        if self.revoked:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


async def list_tokens(session: AsyncSession, *, user: str | None = None) -> list[TokenInfo]:
    stmt = (
        select(ApiToken, User.name)
        .join(User, col(User.id) == ApiToken.user_id)
        .order_by(col(ApiToken.id))
    )
    if user is not None:
        stmt = stmt.where(User.name == user)
    return [
        TokenInfo(
            id=t.id or 0,
            user=name,
            label=t.label,
            created_at=t.created_at,
            expires_at=t.expires_at,
            last_used_at=t.last_used_at,
            revoked=t.revoked,
        )
        for t, name in (await session.exec(stmt)).all()
    ]


async def revoke_token(session: AsyncSession, *, token_id: int) -> str:
    """Revoke a token for good; the name of its user."""
    row = (
        await session.exec(
            select(ApiToken, User.name)
            .join(User, col(User.id) == ApiToken.user_id)
            .where(ApiToken.id == token_id)
        )
    ).first()
    if row is None:
        raise AccountError(f"no token {token_id}")
    api_token, name = row
    api_token.revoked = True
    session.add(api_token)
    await session.flush()
    return name


@dataclass(frozen=True)
class Scope:
    """Which incidents a user may see: all, those of some units, or exercises only; and,
    for the ministry, real incidents escalated to at least ``min_level`` only."""

    all_units: bool
    units: frozenset[str]
    exercises_only: bool = False
    real_only: bool = False
    min_level: Level | None = None

    def levels(self) -> tuple[Level, ...]:
        """The levels an incident may be at for this scope."""
        start = LEVEL_ORDER.index(self.min_level) if self.min_level else 0
        return LEVEL_ORDER[start:]

    def allows(self, incident: Incident) -> bool:
        if self.exercises_only:
            return incident.exercise is not None
        if self.real_only and incident.exercise is not None:
            return False
        if self.min_level and incident.level not in self.levels():
            return False
        return self.all_units or incident.unit in self.units

    def narrow(self, stmt: SelectOfScalar[Incident]) -> SelectOfScalar[Incident]:
        """``stmt``, a select of incidents, restricted to those :meth:`allows` admits."""
        if not self.all_units:
            stmt = stmt.where(col(Incident.unit).in_(self.units))
        if self.exercises_only:
            stmt = stmt.where(col(Incident.exercise).is_not(None))
        if self.real_only:
            stmt = stmt.where(col(Incident.exercise).is_(None))
        if self.min_level:
            stmt = stmt.where(col(Incident.level).in_([lvl.value for lvl in self.levels()]))
        return stmt


def scope_for(user: User, units_by_region: dict[str, list[str]]) -> Scope:
    """Unit staff see their unit, a region its units, national roles everything; the ministry
    real incidents escalated to it (level ``jd``)."""
    if user.role == Role.MINISTRY:
        return Scope(all_units=True, units=frozenset(), real_only=True, min_level=Level.JD)
    if user.role in NATIONAL_ROLES:
        return Scope(all_units=True, units=frozenset())
    if user.role == Role.EXERCISE_CONTROLLER:
        return Scope(all_units=True, units=frozenset(), exercises_only=True)
    if user.role == Role.REGION and user.region:
        return Scope(all_units=False, units=frozenset(units_by_region.get(user.region, [])))
    return Scope(all_units=False, units=frozenset({user.unit} if user.unit else set()))
