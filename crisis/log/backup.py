"""``crisis backup -o FILE`` and ``crisis restore FILE``: one tar.gz with everything durable.

Members (regular files only, checked against the manifest's SHA-256 on restore)::

    manifest.json            format, version, created, database kind, heads root, counts, files
    data/log-anchor.jsonl    the log anchor (copied first: every head it names is then in the
                             database copy taken after it)
    database/crisis.db       SQLite: an online copy (sqlite3 backup API, one consistent read)
    database/crisis.pgdump   PostgreSQL: ``pg_dump -Fc`` of the same snapshot the manifest's
                             heads were read in (``pg_export_snapshot``)
    data/outbox.db           accepted events not yet in Kafka/the log (sqlite3 backup), if any
    data/secret_key          the session signing key, if any

Restore goes into an empty data directory and, for PostgreSQL, an empty database (no table in
``public``) only, then runs the log verification and compares the heads root with the
manifest's.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sqlalchemy.engine import make_url

from crisis.clock import utcnow
from crisis.log.anchor import ANCHOR_FILE, AnchorLog, verify_anchored
from crisis.log.chain import format_time
from crisis.log.verify import heads_root
from crisis.settings import Settings

FORMAT = "crisis-backup"
VERSION = 1
MANIFEST = "manifest.json"
SQLITE_MEMBER = "database/crisis.db"
PG_MEMBER = "database/crisis.pgdump"
OUTBOX_FILE = "outbox.db"
SECRET_FILE = "secret_key"  # noqa: S105 (a file name)
#: member name → file name in the data directory
DATA_MEMBERS = {
    f"data/{ANCHOR_FILE}": ANCHOR_FILE,
    f"data/{OUTBOX_FILE}": OUTBOX_FILE,
    f"data/{SECRET_FILE}": SECRET_FILE,
}


class BackupError(Exception):
    """A clear reason to stop; ``code`` is the exit status (2: refused or unusable input)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Stats:
    heads_root: str
    incidents: int
    entries: int


def _progress(message: str) -> None:
    print(message, flush=True)


def database_kind(settings: Settings) -> str:
    url = settings.effective_database_url
    if url.startswith("sqlite"):
        return "sqlite"
    if url.startswith("postgresql"):
        return "postgresql"
    raise BackupError(f"unsupported database URL for backup/restore: {url.split('://')[0]}", 2)


def sqlite_file(settings: Settings) -> Path:
    database = make_url(settings.effective_database_url).database
    if not database or database == ":memory:":
        raise BackupError("the SQLite database is in memory: nothing to back up", 2)
    return Path(database)


def _pg_uri(settings: Settings) -> tuple[str, dict[str, str]]:
    """A libpq URI without the password, and an environment carrying it (not in ``ps``)."""
    url = make_url(settings.effective_database_url)
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    plain = url.set(drivername="postgresql", password=None, query={})
    return plain.render_as_string(hide_password=False), env


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BackupError(
            f"{name} is not on PATH: install the PostgreSQL client tools "
            "(the same major version as the server, or newer)",
            2,
        )
    return path


def _size(path: Path) -> str:
    return f"{path.stat().st_size / 1_048_576:.1f} MB"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _sqlite_copy(src: Path, dst: Path) -> None:
    """An online copy: one read transaction (WAL: writers go on), so it never restarts."""
    source = sqlite3.connect(src, timeout=30)
    try:
        target = sqlite3.connect(dst)
        try:
            source.backup(target, pages=-1)
            target.execute("PRAGMA journal_mode=DELETE")
        finally:
            target.close()
    finally:
        source.close()


def _sqlite_stats(path: Path) -> Stats:
    db = sqlite3.connect(path)
    try:
        heads = {
            str(i): (int(s), str(h))
            for i, s, h in db.execute("SELECT id, head_seq, head_hash FROM incidents")
        }
        (entries,) = db.execute("SELECT count(*) FROM log_entries").fetchone()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path}: not a crisis database ({exc})") from exc
    finally:
        db.close()
    return Stats(heads_root(heads), len(heads), int(entries))


def _copy_anchor(src: Path, dst: Path) -> bool:
    """The complete lines of the anchor file (a torn tail being written is left out)."""
    if not src.exists():
        return False
    data = src.read_bytes()
    dst.write_bytes(data[: data.rfind(b"\n") + 1])
    return True


async def _pg_dump(settings: Settings, dst: Path) -> Stats:
    import asyncpg

    pg_dump = _tool("pg_dump")
    uri, env = _pg_uri(settings)
    try:
        conn = await asyncpg.connect(uri, password=env.get("PGPASSWORD"))
    except (OSError, asyncpg.PostgresError) as exc:
        raise BackupError(f"cannot connect to PostgreSQL: {exc}") from exc
    try:
        tx = conn.transaction(isolation="repeatable_read", readonly=True)
        await tx.start()
        snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
        try:
            rows = await conn.fetch("SELECT id, head_seq, head_hash FROM incidents")
            entries = await conn.fetchval("SELECT count(*) FROM log_entries")
        except asyncpg.PostgresError as exc:
            raise BackupError(f"not a crisis database ({exc})") from exc
        heads = {str(r[0]): (int(r[1]), str(r[2])) for r in rows}
        _progress(f"backup: pg_dump of {len(heads)} incidents, {entries} entries …")
        proc = await asyncio.create_subprocess_exec(
            pg_dump,
            "--format=custom",
            f"--snapshot={snapshot}",
            f"--file={dst}",
            f"--dbname={uri}",
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await proc.communicate()
        await tx.rollback()
    finally:
        await conn.close()
    if proc.returncode != 0:
        raise BackupError(f"pg_dump failed: {err.decode(errors='replace').strip()}")
    return Stats(heads_root(heads), len(heads), int(entries))


def backup(settings: Settings, output: Path) -> int:
    """``crisis backup -o FILE``; the exit status."""
    try:
        return _backup(settings, output)
    except BackupError as exc:
        print(f"crisis backup: {exc}", file=sys.stderr)
        return exc.code


def _backup(settings: Settings, output: Path) -> int:
    kind = database_kind(settings)
    if output.exists():
        raise BackupError(f"{output} exists; choose another name", 2)
    if kind == "sqlite" and not sqlite_file(settings).exists():
        raise BackupError(f"no database at {sqlite_file(settings)}", 2)
    if kind == "postgresql":
        _tool("pg_dump")
    data_dir = settings.data_dir
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".crisis-backup-", dir=output.parent) as tmp:
        work = Path(tmp)
        (work / "data").mkdir()
        (work / "database").mkdir()
        members: list[str] = []
        # The anchor first: every head it names is committed, so the copy taken next has it.
        if _copy_anchor(data_dir / ANCHOR_FILE, work / "data" / ANCHOR_FILE):
            members.append(f"data/{ANCHOR_FILE}")
            _progress("backup: log anchor copied")
        else:
            _progress(f"backup: no log anchor in {data_dir} (deletions cannot be detected)")
        # The outbox before the database: an event logged (and removed from the outbox) in
        # between is then in the database copy; one in both is stored once by (source, id).
        outbox = data_dir / OUTBOX_FILE
        if outbox.exists():
            try:
                _sqlite_copy(outbox, work / "data" / OUTBOX_FILE)
            except sqlite3.Error as exc:
                raise BackupError(f"cannot copy {outbox}: {exc}") from exc
            members.append(f"data/{OUTBOX_FILE}")
            _progress("backup: outbox copied")
        if kind == "sqlite":
            src = sqlite_file(settings)
            _progress(f"backup: copying SQLite database {src} ({_size(src)}) …")
            try:
                _sqlite_copy(src, work / SQLITE_MEMBER)
            except sqlite3.Error as exc:
                raise BackupError(f"cannot copy {src}: {exc}") from exc
            stats = _sqlite_stats(work / SQLITE_MEMBER)
            members.append(SQLITE_MEMBER)
        else:
            stats = asyncio.run(_pg_dump(settings, work / PG_MEMBER))
            members.append(PG_MEMBER)
        _progress(f"backup: database copied ({stats.incidents} incidents, {stats.entries} entries)")
        secret = data_dir / SECRET_FILE
        if secret.exists():
            shutil.copyfile(secret, work / "data" / SECRET_FILE)
            members.append(f"data/{SECRET_FILE}")
        files = {
            name: {"sha256": _sha256(work / name), "size": (work / name).stat().st_size}
            for name in members
        }
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "created": format_time(utcnow()),
            "database": kind,
            "heads_root": stats.heads_root,
            "incidents": stats.incidents,
            "entries": stats.entries,
            "files": files,
        }
        (work / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        _progress(f"backup: writing {output} …")
        partial = output.with_name(output.name + ".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as raw:
            with tarfile.open(fileobj=raw, mode="w:gz") as tar:
                for name in [MANIFEST, *members]:
                    tar.add(work / name, arcname=name, recursive=False)
            raw.flush()
            os.fsync(raw.fileno())
        partial.replace(output)
    print(
        f"backup: {output} ({_size(output)}): {stats.incidents} incidents, "
        f"{stats.entries} entries, heads {stats.heads_root}",
        flush=True,
    )
    return 0


# --- restore ----------------------------------------------------------------------------


@contextlib.contextmanager
def _open_archive(path: Path) -> Iterator[tuple[tarfile.TarFile, dict[str, Any]]]:
    try:
        tar = tarfile.open(path, mode="r:*")
    except FileNotFoundError as exc:
        raise BackupError(f"{path}: no such file", 2) from exc
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise BackupError(f"{path}: not a crisis backup archive ({exc})", 2) from exc
    try:
        try:
            handle = tar.extractfile(MANIFEST)
            if handle is None:
                raise KeyError(MANIFEST)
            manifest = json.loads(handle.read())
        except (KeyError, ValueError, tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise BackupError(
                f"{path}: not a crisis backup archive (no readable manifest)", 2
            ) from exc
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise BackupError(f"{path}: not a crisis backup archive (manifest format)", 2)
        if manifest.get("version") != VERSION:
            raise BackupError(
                f"{path}: backup format version {manifest.get('version')!r}; "
                f"this crisis reads version {VERSION}",
                2,
            )
        yield tar, manifest
    finally:
        tar.close()


def _extract(tar: tarfile.TarFile, manifest: dict[str, Any], name: str, dst: Path) -> None:
    """One member to ``dst`` (via a partial file), checked against the manifest."""
    expected = manifest.get("files", {}).get(name)
    if not isinstance(expected, dict):
        raise BackupError(f"the archive's manifest does not list {name}", 2)
    try:
        member = tar.getmember(name)
        handle: IO[bytes] | None = tar.extractfile(member) if member.isreg() else None
        if handle is None:
            raise BackupError(f"{name} in the archive is not a regular file", 2)
        partial = dst.with_name(dst.name + ".partial")
        digest = hashlib.sha256()
        size = 0
        with partial.open("wb") as out:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
    except KeyError as exc:
        raise BackupError(f"the archive lacks {name}", 2) from exc
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise BackupError(f"the archive is damaged at {name} ({exc})", 2) from exc
    if digest.hexdigest() != expected.get("sha256") or size != expected.get("size"):
        partial.unlink()
        raise BackupError(f"{name} in the archive does not match its checksum (damaged)", 2)
    partial.replace(dst)


async def _pg_is_empty(settings: Settings) -> bool:
    import asyncpg

    uri, env = _pg_uri(settings)
    try:
        conn = await asyncpg.connect(uri, password=env.get("PGPASSWORD"))
    except (OSError, asyncpg.PostgresError) as exc:
        raise BackupError(f"cannot connect to PostgreSQL: {exc}") from exc
    try:
        count = await conn.fetchval(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        )
    finally:
        await conn.close()
    return int(count) == 0


def _pg_restore(settings: Settings, dump: Path) -> None:
    pg_restore = _tool("pg_restore")
    uri, env = _pg_uri(settings)
    proc = subprocess.run(
        [
            pg_restore,
            "--exit-on-error",
            "--single-transaction",
            "--no-owner",
            "--no-privileges",
            f"--dbname={uri}",
            str(dump),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
    )
    if proc.returncode != 0:
        raise BackupError(f"pg_restore failed: {proc.stderr.decode(errors='replace').strip()}")


def restore(settings: Settings, archive: Path) -> int:
    """``crisis restore FILE``; the exit status."""
    try:
        return _restore(settings, archive)
    except BackupError as exc:
        print(f"crisis restore: {exc}", file=sys.stderr)
        return exc.code


def _restore(settings: Settings, archive: Path) -> int:
    kind = database_kind(settings)
    data_dir = settings.data_dir
    with _open_archive(archive) as (tar, manifest):
        if manifest.get("database") != kind:
            raise BackupError(
                f"the backup holds a {manifest.get('database')} database but the target is "
                f"{kind} (set CRISIS_DATABASE_URL accordingly)",
                2,
            )
        if data_dir.exists() and any(data_dir.iterdir()):
            raise BackupError(
                f"the data directory {data_dir} is not empty; restore needs an empty one", 2
            )
        if kind == "sqlite":
            target = sqlite_file(settings)
            for path in (target, Path(f"{target}-wal"), Path(f"{target}-journal")):
                if path.exists():
                    raise BackupError(f"{path} exists; restore needs an empty target", 2)
        else:
            _tool("pg_restore")
            if not asyncio.run(_pg_is_empty(settings)):
                raise BackupError(
                    "the target PostgreSQL database is not empty (it has tables in the public "
                    "schema); restore needs an empty one",
                    2,
                )
        _progress(
            f"restore: {archive} from {manifest.get('created')}: {manifest.get('incidents')} "
            f"incidents, {manifest.get('entries')} entries ({kind})"
        )
        created_dir = not data_dir.exists()
        data_dir.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        try:
            for member, filename in DATA_MEMBERS.items():
                if member in manifest.get("files", {}):
                    dst = data_dir / filename
                    _extract(tar, manifest, member, dst)
                    written.append(dst)
                    if filename == SECRET_FILE:
                        dst.chmod(0o600)
                    _progress(f"restore: {filename} restored")
            if kind == "sqlite":
                target = sqlite_file(settings)
                target.parent.mkdir(parents=True, exist_ok=True)
                _progress(f"restore: SQLite database → {target} …")
                _extract(tar, manifest, SQLITE_MEMBER, target)
                written.append(target)
            else:
                with tempfile.TemporaryDirectory(prefix=".crisis-restore-") as tmp:
                    dump = Path(tmp) / "crisis.pgdump"
                    _extract(tar, manifest, PG_MEMBER, dump)
                    _progress(f"restore: pg_restore ({_size(dump)}) …")
                    _pg_restore(settings, dump)
            _progress("restore: database restored")
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            if created_dir:
                with contextlib.suppress(OSError):
                    data_dir.rmdir()
            raise
    return asyncio.run(_check(settings, manifest))


async def _check(settings: Settings, manifest: dict[str, Any]) -> int:
    """The restored log must verify, with the heads root the backup recorded."""
    _progress("restore: verifying the log …")
    anchor = AnchorLog.load(settings.data_dir / ANCHOR_FILE)
    report = await verify_anchored(settings, anchor)
    expected = manifest.get("heads_root")
    problems = [str(b) for b in report.breaks] + [str(b) for b in report.anchor_breaks]
    if anchor.problem:
        problems.append(f"log anchor {anchor.problem}")
    if report.heads_root != expected:
        problems.append(f"heads {report.heads_root} differ from the backup's {expected}")
    if problems:
        for problem in problems:
            print(f"crisis restore: BROKEN: {problem}", file=sys.stderr)
        return 1
    print(
        f"restore: OK: {report.incidents} incidents, {report.entries} entries, every chain "
        f"intact, {report.anchored} anchored heads present; heads {report.heads_root} "
        "matches the backup",
        flush=True,
    )
    return 0
