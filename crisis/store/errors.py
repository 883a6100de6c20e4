"""Which database errors are passing trouble (retry, answer 503) and which are a full disk.

One classifier for the stream worker (a transient error retries the batch and never
dead-letters a valid event) and the web app (a transient error answers 503 with
``Retry-After``, never 500). SQLite and PostgreSQL (asyncpg, through SQLAlchemy or not).

An error is looked at together with what it wraps: SQLAlchemy's ``.orig``, ``__cause__``,
``__context__`` (unless suppressed with ``from None``) and the members of an exception group.
The most specific evidence decides: a driver error or SQLSTATE found anywhere in the chain
wins over SQLAlchemy's generic ``OperationalError`` / ``InterfaceError`` (asyncpg reports bad
query arguments as an ``InterfaceError``: those are the event's fault, not the database's).
"""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Iterator

import asyncpg
from sqlalchemy import exc as sa_exc

#: SQLite messages of a database that is busy or cannot write right now.
SQLITE_TRANSIENT = (
    "database is locked",
    "database table is locked",
    "disk i/o error",
    "database or disk is full",
)
SQLITE_FULL_MESSAGE = "database or disk is full"

#: SQLSTATE classes/codes (PostgreSQL) of a server that is away, overloaded or restarting:
#: 08 connection exception (not 08P01 protocol violation: a client bug), 57P operator
#: intervention (admin/crash shutdown, cannot connect now; not 57014 query cancelled),
#: 53 insufficient resources (disk full, out of memory, too many connections), 58030 I/O
#: error, and the two that a retried transaction resolves: serialization failure, deadlock.
_SQLSTATE_PREFIXES = ("08", "57P", "53")
_SQLSTATE_CODES = frozenset({"58030", "40001", "40P01"})
_SQLSTATE_NOT = frozenset({"08P01"})
PG_DISK_FULL = "53100"

#: errno values of a connection or a disk that is failing for now.
_TRANSIENT_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "ECONNREFUSED",
        "ECONNRESET",
        "ECONNABORTED",
        "EPIPE",
        "ENOTCONN",
        "ETIMEDOUT",
        "EHOSTUNREACH",
        "EHOSTDOWN",
        "ENETUNREACH",
        "ENETDOWN",
        "ENETRESET",
        "EAGAIN",
        "EIO",
        "ENOSPC",
        "EDQUOT",
    )
    if hasattr(errno, name)
)
DISK_FULL_ERRNOS = frozenset(getattr(errno, n) for n in ("ENOSPC", "EDQUOT") if hasattr(errno, n))

#: asyncpg's client-side errors that are the query's fault (bad arguments, configuration).
_ASYNCPG_NOT_TRANSIENT = (
    ValueError,
    asyncpg.exceptions.UnsupportedClientFeatureError,
    asyncpg.exceptions.UnsupportedServerFeatureError,
)
_SQLITE_FULL_CODE = getattr(sqlite3, "SQLITE_FULL", 13)
#: SQLite result codes (primary, the low byte): SQLITE_BUSY, SQLITE_LOCKED, SQLITE_IOERR,
#: SQLITE_FULL.
_SQLITE_TRANSIENT_CODES = frozenset({5, 6, 10, _SQLITE_FULL_CODE})


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and everything it wraps, outermost first, each once."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        orig = (
            getattr(current, "orig", None) if isinstance(current, sa_exc.StatementError) else None
        )
        if isinstance(orig, BaseException):
            todo.append(orig)
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)
        if current.__cause__ is not None:
            todo.append(current.__cause__)
        elif current.__context__ is not None and not current.__suppress_context__:
            todo.append(current.__context__)


def _sqlstate(exc: BaseException) -> str | None:
    for attr in ("sqlstate", "pgcode"):
        value = getattr(exc, attr, None)
        if isinstance(value, str) and len(value) == 5:
            return value
    return None


def _specific(exc: BaseException) -> bool | None:
    """True/False when ``exc`` itself says; None when it is no evidence either way."""
    if isinstance(exc, sa_exc.DisconnectionError | sa_exc.TimeoutError):
        return True  # a dropped connection; no connection free in the pool in time
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, asyncpg.exceptions.InterfaceError):  # client side: closed connection …
        return not isinstance(exc, _ASYNCPG_NOT_TRANSIENT)  # … unless a bad argument
    state = _sqlstate(exc)
    if state is not None:
        if state in _SQLSTATE_NOT:
            return False
        return state.startswith(_SQLSTATE_PREFIXES) or state in _SQLSTATE_CODES
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if isinstance(code, int) and code & 0xFF in _SQLITE_TRANSIENT_CODES:
            return True
        message = str(exc).lower()
        return True if any(m in message for m in SQLITE_TRANSIENT) else None
    if isinstance(exc, ConnectionError | TimeoutError):  # refused, reset, broken pipe, timeout
        return True
    if isinstance(exc, OSError):
        return True if exc.errno in _TRANSIENT_ERRNOS else None
    return None


def is_transient(exc: BaseException) -> bool:
    """The database is unreachable, restarting, locked, out of space or timed out: a retry
    later can succeed, and nothing about the data is wrong."""
    chain = list(causes(exc))
    for current in chain:
        verdict = _specific(current)
        if verdict is not None:
            return verdict
    # No driver-level evidence: SQLAlchemy's generic connection-level classes decide.
    return any(isinstance(c, sa_exc.OperationalError | sa_exc.InterfaceError) for c in chain)


def is_disk_full(exc: BaseException) -> bool:
    """A write failed because the disk (or the user's quota) is full: SQLite's SQLITE_FULL,
    ``OSError`` ENOSPC/EDQUOT, PostgreSQL's disk_full, however wrapped."""
    for current in causes(exc):
        if isinstance(current, OSError) and current.errno in DISK_FULL_ERRNOS:
            return True
        if isinstance(current, sqlite3.Error):
            code = getattr(current, "sqlite_errorcode", None)
            if (isinstance(code, int) and code & 0xFF == _SQLITE_FULL_CODE) or (
                SQLITE_FULL_MESSAGE in str(current).lower()
            ):
                return True
        if _sqlstate(current) == PG_DISK_FULL:
            return True
    return False
