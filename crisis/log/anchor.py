"""The log anchor: checkpoints of every incident's head, kept outside the database.

The hash chains show that an entry was changed, removed from the middle or reordered, but
not that an incident was deleted whole, or that its newest entries were deleted and its head
columns rewound: the rest is still a valid chain. ``crisis log anchor`` therefore writes the
heads to ``log-anchor.jsonl`` in the data directory, an append-only JSON-lines file that is
itself a chain; ``crisis log verify`` then requires every anchored head to be there.

One line per checkpoint (UTF-8 JSON, keys sorted, no spaces, ``\\n``-terminated, fsynced)::

    {"at":"2026-11-22T02:41:07.123456Z","heads":{"20261122-ab12cd34":[7,"<sha256>"]},
     "incidents":12,"n":3,"prev":"<sha256 of line 2's bytes>","root":"<sha256>","v":1}

``heads`` holds only the heads that moved since the previous line; ``root`` is
``crisis.log.verify.heads_root`` over all anchored heads after this line (equal to the ``heads:``
line of ``crisis log verify`` when nothing was appended since); ``prev`` is the SHA-256 of
the previous line without its newline (64 zeros on line 1). Bytes after the last newline are
a line torn by a crash: reported and ignored by verify, cut off by the next checkpoint.

A head is anchored only when it extends the anchored one (a higher seq whose chain still
holds the anchored entry); a head that went back or sideways is refused and reported, so a
rewind can never be laundered into the anchor.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from crisis.clock import utcnow
from crisis.log.chain import format_time
from crisis.log.models import Incident, LogEntry
from crisis.log.verify import AnchoredHead, VerifyReport, heads_root, verify_log
from crisis.settings import Settings
from crisis.store.db import make_engine, make_sessionmaker

ANCHOR_FILE = "log-anchor.jsonl"
FORMAT_VERSION = 1
NO_LINE = "0" * 64
_HEX = frozenset("0123456789abcdef")


class AnchorDamaged(Exception):
    """The anchor file is not a valid chain of checkpoints; nothing is appended to it."""


def anchor_path(settings: Settings) -> Path:
    return settings.data_dir / ANCHOR_FILE


def line_digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def _is_hash(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX


@dataclass
class AnchorLog:
    """What an anchor file holds: the newest anchored head of each incident, and its state.

    ``load`` reads a file whole; ``refresh`` reads only the lines appended since (the
    ``--every`` loop calls it each time) and starts over when the file was replaced.
    """

    path: Path
    heads: dict[str, AnchoredHead] = field(default_factory=dict)
    lines: int = 0
    last_digest: str = NO_LINE
    last_at: str = ""
    last_root: str = ""
    #: bytes of complete lines consumed; the file's size when it has no torn tail
    offset: int = 0
    #: bytes after the last newline (a line torn by a crash), 0 when none
    torn: int = 0
    #: the first damage found (a line that does not parse or does not chain), or None
    problem: str | None = None
    exists: bool = False
    _inode: int | None = None

    @classmethod
    def load(cls, path: Path) -> AnchorLog:
        log = cls(path)
        log.refresh()
        return log

    def _reset(self) -> None:
        fresh = AnchorLog(self.path)
        self.__dict__.update(fresh.__dict__)

    def refresh(self, fd: int | None = None) -> None:
        """Read what was appended since the last read (all of it the first time)."""
        own = fd is None
        if own:
            try:
                fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                self._reset()
                return
        assert fd is not None
        try:
            st = os.fstat(fd)
            if self._inode is not None and (st.st_ino != self._inode or st.st_size < self.offset):
                self._reset()
            self.exists = True
            self._inode = st.st_ino
            chunks = []
            pos = self.offset
            while pos < st.st_size:
                chunk = os.pread(fd, min(1 << 20, st.st_size - pos), pos)
                if not chunk:
                    break
                chunks.append(chunk)
                pos += len(chunk)
        finally:
            if own:
                os.close(fd)
        data = b"".join(chunks)
        end = data.rfind(b"\n") + 1
        self.torn = len(data) - end
        before = self.lines
        for raw in data[:end].split(b"\n")[:-1]:
            self._consume(raw)
            self.offset += len(raw) + 1
        if (
            self.problem is None
            and self.lines > before
            and heads_root(self._pairs()) != self.last_root
        ):
            self.problem = (
                f"line {self.lines}: its root does not match the heads of lines 1-{self.lines}"
            )

    def _pairs(self) -> dict[str, tuple[int, str]]:
        return {iid: (h.seq, h.hash) for iid, h in self.heads.items()}

    def _consume(self, raw: bytes) -> None:
        if self.problem is not None:
            return
        n = self.lines + 1
        try:
            obj = json.loads(raw)
            at, heads, prev, root = obj["at"], obj["heads"], obj["prev"], obj["root"]
            if obj.get("v") != FORMAT_VERSION or obj.get("n") != n:
                raise ValueError(f"expected v {FORMAT_VERSION}, n {n}")
            if not (isinstance(at, str) and isinstance(heads, dict) and _is_hash(root)):
                raise ValueError("at, heads or root malformed")
            parsed = {}
            for incident_id, value in heads.items():
                seq, hash_ = value
                if type(seq) is not int or seq < 1 or not _is_hash(hash_):
                    raise ValueError(f"head of {incident_id} malformed")
                parsed[incident_id] = AnchoredHead(seq, hash_, at)
        except (ValueError, TypeError, KeyError) as exc:
            self.problem = f"line {n}: not a checkpoint ({exc})"
            return
        if prev != self.last_digest:
            self.problem = (
                f"line {n}: does not chain to line {n - 1} "
                "(a line was removed, inserted or changed)"
            )
            return
        self.heads.update(parsed)
        self.lines = n
        self.last_digest = line_digest(raw)
        self.last_at = at
        self.last_root = root


@dataclass
class Checkpoint:
    """What one ``checkpoint`` call did."""

    written: bool = False
    line: int = 0
    at: str = ""
    root: str = ""
    heads: int = 0
    changed: dict[str, tuple[int, str]] = field(default_factory=dict)
    #: heads not anchored because they do not extend the anchored one (one message each)
    refused: list[str] = field(default_factory=list)
    #: bytes of a torn last line that this checkpoint cut off
    dropped_torn: int = 0


async def read_heads(engine: AsyncEngine) -> dict[str, tuple[int, str]]:
    """Every incident's head from the incidents table: one narrow read, no entry is touched."""
    table = Incident.__table__  # type: ignore[attr-defined]
    async with engine.connect() as conn:
        rows = (await conn.execute(select(table.c.id, table.c.head_seq, table.c.head_hash))).all()
    return {str(r[0]): (int(r[1]), str(r[2])) for r in rows}


async def _stored_hashes(
    engine: AsyncEngine, wanted: Mapping[str, int]
) -> dict[tuple[str, int], str]:
    table = LogEntry.__table__  # type: ignore[attr-defined]
    items = sorted(wanted.items())
    out: dict[tuple[str, int], str] = {}
    async with engine.connect() as conn:
        for start in range(0, len(items), 200):
            cond = or_(
                *(
                    and_(table.c.incident_id == iid, table.c.seq == seq)
                    for iid, seq in items[start : start + 200]
                )
            )
            stmt = select(table.c.incident_id, table.c.seq, table.c.hash).where(cond)
            for iid, seq, hash_ in (await conn.execute(stmt)).all():
                out[(str(iid), int(seq))] = str(hash_)
    return out


async def checkpoint(engine: AsyncEngine, log: AnchorLog) -> Checkpoint:
    """Append one line with the heads that moved since the last line (none → nothing written,
    except the first line of a new file). Raises ``AnchorDamaged`` and database errors."""
    current = await read_heads(engine)
    log.path.parent.mkdir(parents=True, exist_ok=True)
    created = not log.path.exists()
    fd = os.open(log.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another anchor process appends only after us
        log.refresh(fd)
        if log.problem is not None:
            raise AnchorDamaged(
                f"{log.path}: {log.problem}; move it aside (keep it: it is evidence) "
                "to start a new anchor"
            )
        result = Checkpoint()
        extending: dict[str, int] = {}
        for incident_id, (seq, hash_) in current.items():
            old = log.heads.get(incident_id)
            if old is None:
                result.changed[incident_id] = (seq, hash_)
            elif seq == old.seq and hash_ == old.hash:
                continue
            elif seq > old.seq:
                result.changed[incident_id] = (seq, hash_)
                extending[incident_id] = old.seq
            else:
                result.refused.append(
                    f"incident {incident_id}: head seq {seq} does not extend the anchored "
                    f"seq {old.seq}: not anchored (run crisis log verify)"
                )
        if extending:
            stored = await _stored_hashes(engine, extending)
            for incident_id, old_seq in extending.items():
                if stored.get((incident_id, old_seq)) != log.heads[incident_id].hash:
                    del result.changed[incident_id]
                    result.refused.append(
                        f"incident {incident_id}: the anchored entry seq {old_seq} is missing "
                        "or changed: not anchored (run crisis log verify)"
                    )
        result.heads = len(set(log.heads) | set(result.changed))
        if not result.changed and log.lines:
            result.line, result.at, result.root = log.lines, log.last_at, log.last_root
            return result
        pairs = log._pairs()
        pairs.update(result.changed)
        result.root = heads_root(pairs)
        result.at = format_time(utcnow())
        result.line = log.lines + 1
        line = {
            "v": FORMAT_VERSION,
            "n": result.line,
            "at": result.at,
            "heads": {iid: [s, h] for iid, (s, h) in sorted(result.changed.items())},
            "incidents": len(pairs),
            "root": result.root,
            "prev": log.last_digest,
        }
        raw = json.dumps(line, sort_keys=True, separators=(",", ":")).encode()
        if log.torn:
            os.ftruncate(fd, log.offset)
            result.dropped_torn, log.torn = log.torn, 0
        data = raw + b"\n"
        while data:
            data = data[os.write(fd, data) :]
        os.fsync(fd)
        if created:
            _fsync_dir(log.path.parent)
        log.offset += len(raw) + 1
        log._consume(raw)
        result.written = True
        return result
    finally:
        os.close(fd)  # releases the lock


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def describe(result: Checkpoint, path: Path) -> str:
    if result.written:
        return (
            f"anchored: line {result.line} at {result.at}, {len(result.changed)} changed of "
            f"{result.heads} heads, root {result.root} ({path})"
        )
    return f"anchored: no head moved since line {result.line} ({result.at}); nothing written"


def _err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _report(result: Checkpoint, seen: set[str]) -> None:
    if result.dropped_torn:
        _err(f"crisis log anchor: cut off a torn last line ({result.dropped_torn} bytes)")
    for message in result.refused:
        if message not in seen:
            _err(f"crisis log anchor: {message}")
    seen.clear()
    seen.update(result.refused)


async def anchor_once(settings: Settings) -> int:
    """``crisis log anchor``: one checkpoint now. 0 written or nothing to write, 1 otherwise."""
    path = anchor_path(settings)
    engine = make_engine(settings)
    try:
        result = await checkpoint(engine, AnchorLog(path))
    except AnchorDamaged as exc:
        _err(f"crisis log anchor: {exc}")
        return 1
    except OSError as exc:
        _err(f"crisis log anchor: {exc}")
        return 1
    except Exception as exc:  # the database: many driver-specific types
        _err(f"crisis log anchor: cannot read the heads ({type(exc).__name__}: {exc})")
        return 1
    finally:
        await engine.dispose()
    _report(result, set())
    print(describe(result, path), flush=True)
    return 1 if result.refused else 0


async def anchor_every(settings: Settings, seconds: float) -> int:
    """``crisis log anchor --every SECONDS``: checkpoint until SIGTERM/SIGINT, then once more.

    Never exits on a failure (a database outage, a damaged file): says so once, retries each
    period, and says when it works again.
    """
    path = anchor_path(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    engine = make_engine(settings)
    log = AnchorLog(path)
    seen: set[str] = set()
    failing: str | None = None

    async def tick(limit: float) -> None:
        nonlocal failing
        try:
            result = await asyncio.wait_for(checkpoint(engine, log), limit)
        except Exception as exc:  # an outage must never end the loop
            message = f"{type(exc).__name__}: {exc}".strip()
            if message != failing:
                _err(f"crisis log anchor: checkpoint failed ({message}); retrying every {seconds}s")
            failing = message
            log._reset()  # re-read the file next time: a failed write may have left anything
            return
        if failing is not None:
            print("crisis log anchor: checkpoints work again", flush=True)
            failing = None
        _report(result, seen)

    print(f"crisis log anchor: every {seconds}s into {path}", flush=True)
    try:
        while not stop.is_set():
            await tick(max(30.0, 2 * seconds))
            try:
                await asyncio.wait_for(stop.wait(), seconds)
            except TimeoutError:
                pass
        await tick(10.0)  # the last checkpoint
        print(f"crisis log anchor: stopped; {describe_last(log)}", flush=True)
        return 0
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await engine.dispose()


def describe_last(log: AnchorLog) -> str:
    if not log.lines:
        return "no checkpoint written"
    return f"last checkpoint line {log.lines} at {log.last_at}, root {log.last_root}"


async def verify_anchored(
    settings: Settings, anchor: AnchorLog, *, incident_id: str | None = None
) -> VerifyReport:
    """``verify_log`` over the database (one incident's chain with ``incident_id``), against
    the heads of an anchor read beforehand."""
    engine = make_engine(settings)
    try:
        async with make_sessionmaker(engine)() as session:
            return await verify_log(
                session,
                anchored=anchor.heads if anchor.lines else None,
                incident_id=incident_id,
            )
    finally:
        await engine.dispose()
