"""The durable local outbox: events that Kafka could not take yet, in arrival order.

A 202 promises that an event cannot be lost. When Kafka is unreachable the producer writes the
event here first (SQLite, ``synchronous=FULL``: the commit returns only after fsync) and drains
it in order when Kafka is back. With a broker that keeps nothing on disk (the embedded one) every
accepted event is written here and stays until the crisis log holds it (``until_logged``); each
row keeps the event's (source, id) so that can be looked up. Synchronous on purpose; the producer
runs it in a thread.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Record:
    """One Kafka record as the producer sends it."""

    topic: str
    key: bytes | None
    value: bytes
    timestamp_ms: int
    #: The event's (source, id) when the record carries one: how the log is asked for it.
    ident: tuple[str, str] | None = None


class Outbox:
    """An append-only FIFO of records in one SQLite file; rows leave once acked or logged."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outbox ("
            " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
            " topic TEXT NOT NULL, key BLOB, value BLOB NOT NULL, timestamp_ms INTEGER NOT NULL,"
            " source TEXT, event_id TEXT)"
        )
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(outbox)")}
        for column in ("source", "event_id"):  # an outbox file from before these columns
            if column not in columns:
                self._db.execute(f"ALTER TABLE outbox ADD COLUMN {column} TEXT")
        self._depth: int = self._db.execute("SELECT count(*) FROM outbox").fetchone()[0]
        self._last_seq: int = self._db.execute(
            "SELECT coalesce(max(seq), 0) FROM outbox"
        ).fetchone()[0]

    def depth(self) -> int:
        """Records still kept (kept in memory, exact after every operation)."""
        return self._depth

    def last_seq(self) -> int:
        """The sequence number of the newest record ever appended (0 for none)."""
        return self._last_seq

    def append(self, records: list[Record]) -> None:
        """Store records durably (one transaction, fsync before returning)."""
        if not records:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO outbox (topic, key, value, timestamp_ms, source, event_id)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        (r.topic, r.key, r.value, r.timestamp_ms, *(r.ident or (None, None)))
                        for r in records
                    ],
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            self._depth += len(records)
            self._last_seq = self._db.execute("SELECT max(seq) FROM outbox").fetchone()[0]

    def peek(self, limit: int, *, after: int = 0) -> list[tuple[int, Record]]:
        """The oldest ``limit`` records after sequence number ``after``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, topic, key, value, timestamp_ms, source, event_id FROM outbox"
                " WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, limit),
            ).fetchall()
        return [
            (
                row[0],
                Record(
                    row[1],
                    row[2],
                    row[3],
                    row[4],
                    (row[5], row[6]) if row[5] is not None and row[6] is not None else None,
                ),
            )
            for row in rows
        ]

    def remove(self, seqs: list[int]) -> None:
        """Forget records Kafka has acknowledged (or the crisis log holds)."""
        if not seqs:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                removed = 0
                for start in range(0, len(seqs), 500):
                    chunk = seqs[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    cur = self._db.execute(f"DELETE FROM outbox WHERE seq IN ({marks})", chunk)  # noqa: S608
                    removed += cur.rowcount
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            self._depth -= removed

    def close(self) -> None:
        with self._lock:
            self._db.close()
