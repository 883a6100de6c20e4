"""``crisis backup`` / ``crisis restore`` on SQLite and PostgreSQL, through the CLI's ``main``.

A populated data directory (log written through ``crisis.log``, an anchor, an outbox, the
secret key) is backed up, restored into an empty directory / a fresh empty database, and
``crisis log verify`` there must pass with the same heads root as the source.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sqlite3
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from crisis.cli import main
from crisis.log import anchor
from crisis.log.append import append, open_incident
from crisis.log.models import IncidentCreate
from crisis.settings import Settings
from crisis.store.db import make_engine, make_sessionmaker, migrate
from tests.conftest import PG_ENV, _pg_admin, _with_database


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def urls(request: pytest.FixtureRequest) -> Iterator[tuple[str | None, str | None]]:
    """(source, target) database URLs; None → SQLite in the data directory."""
    if request.param == "sqlite":
        yield None, None
        return
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"{PG_ENV} is not set: PostgreSQL tests need a server")
    names = [f"crisis_test_{secrets.token_hex(6)}" for _ in range(2)]
    for name in names:
        asyncio.run(_pg_admin(url, f'CREATE DATABASE "{name}"'))
    try:
        yield _with_database(url, names[0]), _with_database(url, names[1])
    finally:
        for name in names:
            asyncio.run(_pg_admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _use(monkeypatch: pytest.MonkeyPatch, data_dir: Path, url: str | None) -> None:
    for key in list(os.environ):
        if key.startswith("CRISIS_") and key != PG_ENV:
            monkeypatch.delenv(key)
    monkeypatch.setenv("CRISIS_DATA_DIR", str(data_dir))
    if url:
        monkeypatch.setenv("CRISIS_DATABASE_URL", url)


async def _populate(settings: Settings) -> None:
    engine = make_engine(settings)
    await migrate(engine)
    async with make_sessionmaker(engine)() as session:
        for n in range(3):
            incident, _ = await open_incident(
                session,
                incident=IncidentCreate(
                    type="fire_alarm", title=f"Brann {n}", unit="ringerike", severity=4
                ),
                actor="system:test",
                incident_id=f"inc-{n}",
            )
            for k in range(4):
                await append(
                    session,
                    incident_id=incident.id,
                    kind="observation",
                    actor="user:a",
                    text=f"obs {k} ÆØÅ",
                    data={"k": k},
                )
            await session.commit()
    await anchor.checkpoint(engine, anchor.AnchorLog(anchor.anchor_path(settings)))
    async with make_sessionmaker(engine)() as session:  # after the checkpoint: not anchored yet
        await append(session, incident_id="inc-1", kind="observation", actor="user:b")
        await session.commit()
    await engine.dispose()
    outbox = sqlite3.connect(settings.data_dir / "outbox.db")
    with outbox:
        outbox.execute("CREATE TABLE outbox (seq INTEGER PRIMARY KEY, value BLOB)")
        outbox.execute("INSERT INTO outbox (value) VALUES (x'7b7d')")
    outbox.close()
    (settings.data_dir / "secret_key").write_text("s3cret\n")


def _heads(capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["log", "verify"])
    out = capsys.readouterr()
    [heads] = [line for line in out.out.splitlines() if line.startswith("heads: ")]
    return code, heads.removeprefix("heads: "), out.out + out.err


def test_backup_and_restore_into_empty_target(
    urls: tuple[str | None, str | None],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source_url, target_url = urls
    src, dst = tmp_path / "src", tmp_path / "dst"
    _use(monkeypatch, src, source_url)
    asyncio.run(_populate(Settings()))
    code, source_root, _ = _heads(capsys)
    assert code == 0

    archive = tmp_path / "backups" / "crisis.tar.gz"
    assert main(["backup", "-o", str(archive)]) == 0
    out = capsys.readouterr().out
    assert "backup: log anchor copied" in out and source_root in out
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    kind = "sqlite" if source_url is None else "postgresql"
    db_member = "database/crisis.db" if kind == "sqlite" else "database/crisis.pgdump"
    assert names == {
        "manifest.json",
        db_member,
        "data/log-anchor.jsonl",
        "data/outbox.db",
        "data/secret_key",
    }
    assert manifest["database"] == kind and manifest["version"] == 1
    assert (manifest["heads_root"], manifest["incidents"], manifest["entries"]) == (
        source_root,
        3,
        16,
    )
    assert main(["backup", "-o", str(archive)]) == 2  # never overwrites a backup
    assert "exists" in capsys.readouterr().err

    _use(monkeypatch, dst, target_url)
    assert main(["restore", str(archive)]) == 0
    out = capsys.readouterr().out
    assert f"heads {source_root} matches the backup" in out and "3 anchored heads present" in out
    code, restored_root, text = _heads(capsys)
    assert code == 0, text
    assert restored_root == source_root
    assert "WARNING" not in text
    assert (dst / "secret_key").read_text() == "s3cret\n"
    assert (dst / "secret_key").stat().st_mode & 0o777 == 0o600
    rows = sqlite3.connect(dst / "outbox.db").execute("SELECT value FROM outbox").fetchall()
    assert rows == [(b"{}",)]
    assert (dst / anchor.ANCHOR_FILE).read_bytes() == (src / anchor.ANCHOR_FILE).read_bytes()

    # The restored copy is a live log: it takes new entries and still verifies.
    async def append_later() -> None:
        engine = make_engine(Settings())
        async with make_sessionmaker(engine)() as session:
            await append(session, incident_id="inc-2", kind="observation", actor="u:c")
            await session.commit()
        await engine.dispose()

    asyncio.run(append_later())
    code, later_root, text = _heads(capsys)
    assert code == 0 and later_root != source_root, text

    # A second restore onto it is refused: the data directory is no longer empty.
    assert main(["restore", str(archive)]) == 2
    assert "is not empty" in capsys.readouterr().err
    if target_url is not None:
        # ... and an empty data directory with the (now full) database too.
        _use(monkeypatch, tmp_path / "dst2", target_url)
        assert main(["restore", str(archive)]) == 2
        err = capsys.readouterr().err
        assert "target PostgreSQL database is not empty" in err
        assert not (tmp_path / "dst2").exists() or not any((tmp_path / "dst2").iterdir())


def test_restore_refuses_bad_archives_without_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _use(monkeypatch, tmp_path / "dst", None)
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not an archive at all")
    assert main(["restore", str(junk)]) == 2
    err = capsys.readouterr().err
    assert "not a crisis backup archive" in err and "Traceback" not in err
    assert main(["restore", str(tmp_path / "missing.tar.gz")]) == 2
    assert "no such file" in capsys.readouterr().err

    # A real backup whose database member was altered: refused by its checksum, nothing left.
    src = tmp_path / "src"
    _use(monkeypatch, src, None)
    asyncio.run(_populate(Settings()))
    good = tmp_path / "good.tar.gz"
    assert main(["backup", "-o", str(good)]) == 0
    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(good) as tin, tarfile.open(bad, "w:gz") as tout:
        for member in tin.getmembers():
            data = tin.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == "database/crisis.db":
                data = data[:-1] + bytes([data[-1] ^ 1])
            member.size = len(data)
            import io

            tout.addfile(member, io.BytesIO(data))
    _use(monkeypatch, tmp_path / "dst", None)
    capsys.readouterr()
    assert main(["restore", str(bad)]) == 2
    assert "does not match its checksum" in capsys.readouterr().err
    assert not (tmp_path / "dst").exists()


def test_backup_without_pg_dump_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _use(monkeypatch, tmp_path / "var", "postgresql://nobody@127.0.0.1:1/none")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert main(["backup", "-o", str(tmp_path / "b.tar.gz")]) == 2
    err = capsys.readouterr().err
    assert "pg_dump is not on PATH" in err and "Traceback" not in err
    assert not (tmp_path / "b.tar.gz").exists()
