"""Users, roles, scopes and API tokens.

Passwords are hashed with argon2id (argon2-cffi); API tokens are 256-bit random secrets
of which only the SHA-256 is stored, so a leaked database yields no usable credential.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from crisis.models import LEVEL_ORDER, ApiToken, Incident, Level, Role, User

_hasher = PasswordHasher()

#: Roles that see every unit's incidents.
NATIONAL_ROLES = frozenset({Role.ADMIN, Role.KDI, Role.COMMUNICATION, Role.MINISTRY})


class AccountError(ValueError):
    pass


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password(user: User, password: str) -> bool:
    try:
        return _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


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
    if len(password) < 8:
        raise AccountError("a password has at least 8 characters")
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


async def authenticate(session: AsyncSession, *, name: str, password: str) -> User | None:
    user = (await session.exec(select(User).where(User.name == name))).first()
    if user is None or not user.active:
        # Spend the same time as a real check so names cannot be probed by timing.
        _hasher.hash(password)
        return None
    return user if check_password(user, password) else None


async def create_token(session: AsyncSession, *, name: str, label: str = "") -> str:
    """A new bearer token for user ``name``; the secret is returned once and never stored."""
    user = (await session.exec(select(User).where(User.name == name))).first()
    if user is None:
        raise AccountError(f"no user {name!r}")
    assert user.id is not None
    token = "crisis_" + secrets.token_urlsafe(32)
    session.add(ApiToken(user_id=user.id, token_hash=hash_token(token), label=label))
    await session.flush()
    return token


async def user_for_token(session: AsyncSession, token: str) -> User | None:
    row = (
        await session.exec(
            select(User)
            .join(ApiToken, ApiToken.user_id == User.id)  # type: ignore[arg-type]
            .where(ApiToken.token_hash == hash_token(token), ApiToken.revoked == False)  # noqa: E712
        )
    ).first()
    return row if row is not None and row.active else None


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
