"""The durable local outbox: events that Kafka could not take yet, in arrival order.

A 202 promises that an event cannot be lost. When Kafka is unreachable the producer writes the
event here first (SQLite, ``synchronous=FULL``: the commit returns only after fsync) and drains
it in order when Kafka is back. Synchronous on purpose; the producer runs it in a thread.
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


class Outbox:
    """An append-only FIFO of records in one SQLite file; rows leave only once Kafka acked."""

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
            " topic TEXT NOT NULL, key BLOB, value BLOB NOT NULL, timestamp_ms INTEGER NOT NULL)"
        )
        self._depth: int = self._db.execute("SELECT count(*) FROM outbox").fetchone()[0]

    def depth(self) -> int:
        """Records waiting for Kafka (kept in memory, exact after every operation)."""
        return self._depth

    def append(self, records: list[Record]) -> None:
        """Store records durably (one transaction, fsync before returning)."""
        if not records:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO outbox (topic, key, value, timestamp_ms) VALUES (?, ?, ?, ?)",
                    [(r.topic, r.key, r.value, r.timestamp_ms) for r in records],
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            self._depth += len(records)

    def peek(self, limit: int) -> list[tuple[int, Record]]:
        """The oldest ``limit`` records with their sequence numbers, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, topic, key, value, timestamp_ms FROM outbox ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
        return [(row[0], Record(row[1], row[2], row[3], row[4])) for row in rows]

    def remove(self, seqs: list[int]) -> None:
        """Forget records Kafka has acknowledged."""
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
