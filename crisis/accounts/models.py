"""Account tables: users, API tokens, browser sessions and the login throttle."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column
from sqlmodel import Field, SQLModel

from crisis.clock import utcnow
from crisis.store.sqltypes import UTCDateTime


class UserBase(SQLModel):
    name: str = Field(max_length=80, unique=True, index=True)
    role: str = Field(max_length=40)
    unit: str | None = Field(default=None, max_length=80)
    region: str | None = Field(default=None, max_length=40)


class User(UserBase, table=True):
    __tablename__ = "users"

    id: int | None = Field(default=None, primary_key=True)
    password_hash: str
    active: bool = True
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )


class UserPublic(UserBase):
    id: int


class ApiToken(SQLModel, table=True):
    """Bearer tokens, stored as SHA-256 of a 256-bit random secret (never the secret)."""

    __tablename__ = "api_tokens"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    token_hash: str = Field(max_length=64, unique=True)
    label: str = Field(default="", max_length=120)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    revoked: bool = False
    #: None: no expiry (tokens made before expiry existed keep working).
    expires_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    last_used_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )


class WebSession(SQLModel, table=True):
    """A browser login. The cookie carries a random id; only its SHA-256 is stored, so
    deleting the row (logout, password change, disabled user) ends the session at once."""

    __tablename__ = "web_sessions"

    id_hash: str = Field(primary_key=True, max_length=64)
    user_id: int = Field(foreign_key="users.id", index=True)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    last_seen_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    expires_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))


class LoginThrottle(SQLModel, table=True):
    """Unsuccessful login attempts per account name (``user:NAME``) and client address
    (``addr:IP``); an attempt is counted before its password is checked and taken back when
    it succeeds, so concurrent attempts cannot slip past the limit."""

    __tablename__ = "login_throttle"

    key: str = Field(primary_key=True, max_length=200)
    attempts: int = 0
    last_attempt_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))
    locked_until: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
