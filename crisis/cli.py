"""The ``crisis`` command: the all-in-one process tree, its parts, and the log and account tools.

The CLI is the composition root but imports nothing from ``web`` or ``streams``: it runs
them as child processes (``python -m web``, ``python -m streams``), which keeps the
dependency direction of the packages intact and makes ``crisis up`` a real process tree
that one signal takes down.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import secrets
import signal
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from importlib.metadata import entry_points
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlmodel.ext.asyncio.session import AsyncSession

from crisis.accounts import service as accounts
from crisis.domain.organisation import OrganisationError, load_organisation
from crisis.log import privacy
from crisis.log.anchor import AnchorLog, anchor_every, anchor_once, anchor_path, verify_anchored
from crisis.log.backup import backup, restore
from crisis.settings import WORKER_ROLE_HELP, WORKER_ROLES, Settings
from crisis.store.db import make_engine, make_sessionmaker, migrate, migrate_database

LOGIN_FILE = "login.txt"
OSLO = ZoneInfo("Europe/Oslo")


def _settings(data_dir: str | None = None) -> Settings:
    if data_dir:
        os.environ["CRISIS_DATA_DIR"] = data_dir
    return Settings()


# --- log ------------------------------------------------------------------------------


async def _verify(settings: Settings) -> int:
    # The anchor is read before the database: every head it names was committed before it
    # was written, so the snapshot verify_log takes next holds them all.
    path = anchor_path(settings)
    try:
        anchor = AnchorLog.load(path)
    except OSError as exc:
        print(f"crisis log verify: cannot read the log anchor {path}: {exc}", file=sys.stderr)
        return 2
    report = await verify_anchored(settings, anchor)
    print(f"heads: {report.heads_root}")
    if not anchor.lines and anchor.problem is None:
        print(
            f"WARNING: no log anchor ({path}): a deleted incident or deleted newest entries "
            "cannot be detected; run `crisis log anchor`",
            file=sys.stderr,
        )
    if anchor.torn:
        print(
            f"WARNING: the log anchor's last line is torn ({anchor.torn} bytes, a write cut "
            "short by a crash): ignored",
            file=sys.stderr,
        )
    broken = False
    if report.breaks:
        broken = True
        print(f"BROKEN: first broken entry: {report.breaks[0]}", file=sys.stderr)
        for brk in report.breaks[1:]:
            print(f"  also: {brk}", file=sys.stderr)
    for anchor_break in report.anchor_breaks:
        broken = True
        print(f"BROKEN: {anchor_break}", file=sys.stderr)
    if anchor.problem is not None:
        broken = True
        print(f"BROKEN: log anchor {path}: {anchor.problem}", file=sys.stderr)
    if broken:
        return 1
    anchored = (
        f"; {report.anchored} anchored heads present (anchor line {anchor.lines}, {anchor.last_at})"
        if anchor.lines
        else ""
    )
    print(
        f"OK: {report.incidents} incidents, {report.entries} entries, every chain intact{anchored}"
    )
    return 0


async def _verify_incident(settings: Settings, incident_id: str, head: str | None) -> int:
    """One incident's chain, and whether ``head`` (a report's head hash) is one of its
    entries: the log may have grown since the report, so the seq and count are printed."""
    from crisis.log.models import Incident
    from crisis.log.verify import entry_with_hash

    path = anchor_path(settings)
    try:
        anchor = AnchorLog.load(path)
    except OSError as exc:
        print(f"crisis log verify: cannot read the log anchor {path}: {exc}", file=sys.stderr)
        return 2
    report = await verify_anchored(settings, anchor, incident_id=incident_id)
    engine = make_engine(settings)
    try:
        async with make_sessionmaker(engine)() as session:
            incident = await session.get(Incident, incident_id)
            seq = (
                await entry_with_hash(session, incident_id=incident_id, hash_=head)
                if head and incident is not None
                else None
            )
    finally:
        await engine.dispose()
    if incident is None:
        print(f"crisis log verify: no incident {incident_id}", file=sys.stderr)
        return 1
    print(f"incident {incident_id}: {report.entries} entries")
    print(f"head: seq {incident.head_seq} hash {incident.head_hash}")
    broken = False
    if report.breaks:
        broken = True
        print(f"BROKEN: first broken entry: {report.breaks[0]}", file=sys.stderr)
    for anchor_break in report.anchor_breaks:
        broken = True
        print(f"BROKEN: {anchor_break}", file=sys.stderr)
    if head:
        if seq is None:
            broken = True
            print(
                f"BROKEN: {head} is not the hash of any entry of incident {incident_id} "
                "(the report's head is not in the chain)",
                file=sys.stderr,
            )
        else:
            grown = incident.head_seq - seq
            print(
                f"report head: entry seq {seq} of {incident.head_seq}"
                + (f" (the log has grown by {grown} entries since)" if grown else "")
            )
    if broken:
        return 1
    print(
        f"OK: incident {incident_id}: chain intact"
        + (f", report head at seq {seq}" if head else "")
    )
    return 0


def _log(settings: Settings, args: argparse.Namespace) -> int:
    if args.log_command == "anchor":
        if args.every is None:
            return asyncio.run(anchor_once(settings))
        if args.every <= 0:
            print("crisis log anchor: --every takes a positive number of seconds", file=sys.stderr)
            return 2
        return asyncio.run(anchor_every(settings, args.every))
    if args.incident is not None:
        return asyncio.run(_verify_incident(settings, args.incident, args.head))
    if args.head is not None:
        print("crisis log verify: --head needs --incident", file=sys.stderr)
        return 2
    return asyncio.run(_verify(settings))


# --- report export --------------------------------------------------------------------

#: Above this many entries ``crisis report`` says on stderr what it is doing.
PROGRESS_FROM = 1000


async def _report(settings: Settings, args: argparse.Namespace) -> int:
    """``crisis report``: 0 written, 1 no such incident or user, 2 usage."""
    from sqlmodel import select

    from crisis.accounts.models import User
    from crisis.domain.vocabulary import Person
    from crisis.log import IncidentNotFound
    from crisis.log.models import Incident
    from crisis.review import report as review_report

    engine = make_engine(settings)
    try:
        async with make_sessionmaker(engine)() as session:
            viewer: Person
            if args.as_user:
                user = (await session.exec(select(User).where(User.name == args.as_user))).first()
                if user is None:
                    print(f"crisis report: no user {args.as_user!r}", file=sys.stderr)
                    return 1
                viewer = user
            else:
                viewer = _CliViewer()
            incident = await session.get(Incident, args.incident_id)
            big = incident is not None and incident.head_seq >= PROGRESS_FROM

            def progress(line: str) -> None:
                if big:
                    print(f"crisis report {args.incident_id}: {line}", file=sys.stderr, flush=True)

            try:
                report, data = await review_report.export_report(
                    session,
                    incident_id=args.incident_id,
                    viewer=viewer,
                    fmt=args.format,
                    lang=args.lang,
                    progress=progress,
                )
            except IncidentNotFound:
                print(f"crisis report: no incident {args.incident_id}", file=sys.stderr)
                return 1
            await asyncio.to_thread(Path(args.output).write_bytes, data)
            await session.commit()
    finally:
        await engine.dispose()
    integrity = report.integrity
    print(
        f"{args.output}: {args.format}, {integrity.entry_count} entries, head "
        f"{integrity.head_hash}, chain {'intact' if integrity.verified else 'BROKEN'}"
    )
    return 0


class _CliViewer:
    """``crisis report`` without ``--as``: a reader without need-to-know (everything masked)."""

    name = "cli"
    role = "cli"
    unit: str | None = None
    region: str | None = None


# --- access audit ---------------------------------------------------------------------


async def _audit_access(settings: Settings, args: argparse.Namespace) -> int:
    """The access audit, newest first, times in Europe/Oslo."""
    if not 1 <= args.limit <= 100_000:
        print("crisis audit access: --limit is 1 … 100000", file=sys.stderr)
        return 2
    engine = make_engine(settings)
    try:
        await migrate(engine)
        async with make_sessionmaker(engine)() as session:
            rows = await privacy.accesses(
                session, actor=args.actor, incident_id=args.incident, limit=args.limit
            )
    finally:
        await engine.dispose()
    for row in rows:
        at = row.at.astimezone(OSLO).strftime("%Y-%m-%d %H:%M:%S %Z")
        entries = ",".join(str(i) for i in row.entry_ids)
        print(
            f"{at}  {row.actor} ({row.role})  {row.channel}  "
            f"incident {row.incident_id or '-'}  entries {entries or '-'}  "
            f"refs {', '.join(row.inmate_refs)}  need: {row.need or '-'}"
        )
    if not rows:
        print("no recorded reads", file=sys.stderr)
    return 0


# --- accounts -------------------------------------------------------------------------


async def _user_add(settings: Settings, args: argparse.Namespace) -> int:
    password = args.password or getpass.getpass(f"Passord for {args.name}: ")

    async def add(session: AsyncSession) -> int:
        user = await accounts.add_user(
            session,
            name=args.name,
            role=args.role,
            password=password,
            unit=args.unit,
            region=args.region,
        )
        print(f"user {user.name} ({user.role}) created")
        return 0

    return await _accounts(settings, "user add", add)


async def _accounts(
    settings: Settings, command: str, work: Callable[[AsyncSession], Awaitable[int]]
) -> int:
    """Run ``work`` in one committed transaction; an AccountError is exit 2 with its text."""
    engine = make_engine(settings)
    try:
        await migrate(engine)
        async with make_sessionmaker(engine)() as session:
            code = await work(session)
            await session.commit()
            return code
    except accounts.AccountError as exc:
        print(f"crisis {command}: {exc}", file=sys.stderr)
        return 2
    finally:
        await engine.dispose()


def _new_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass(f"Nytt passord for {args.name}: ")
    if getpass.getpass("Gjenta / repeat: ") != first:
        raise accounts.AccountError("the two passwords differ")
    return first


async def _user(settings: Settings, args: argparse.Namespace) -> int:
    if args.user_command == "add":
        return await _user_add(settings, args)
    command = f"user {args.user_command}"
    if args.user_command == "passwd":
        try:
            password = _new_password(args)
        except accounts.AccountError as exc:
            print(f"crisis {command}: {exc}", file=sys.stderr)
            return 2

        async def passwd(session: AsyncSession) -> int:
            ended = await accounts.set_password(session, name=args.name, password=password)
            print(f"password of {args.name} changed; {ended} browser sessions ended")
            return 0

        return await _accounts(settings, command, passwd)
    active = args.user_command == "enable"

    async def toggle(session: AsyncSession) -> int:
        ended = await accounts.set_active(session, name=args.name, active=active)
        if active:
            print(f"user {args.name} enabled")
        else:
            print(
                f"user {args.name} disabled: {ended} browser sessions ended, its tokens are refused"
            )
        return 0

    return await _accounts(settings, command, toggle)


def _oslo(at: datetime | None) -> str:
    return at.astimezone(OSLO).strftime("%Y-%m-%d %H:%M %Z") if at else "-"


async def _token(settings: Settings, args: argparse.Namespace) -> int:
    command = f"token {args.token_command}"

    async def create(session: AsyncSession) -> int:
        days = settings.token_expires_days if args.expires_days is None else args.expires_days
        token = await accounts.create_token(
            session, name=args.name, label=args.label, expires_days=days
        )
        expiry = f"expires in {days} days" if days else "no expiry"
        print(f"token for {args.name} ({expiry}; shown once, store it now):")
        print(token)
        return 0

    async def listing(session: AsyncSession) -> int:
        now = datetime.now(UTC)
        rows = await accounts.list_tokens(session, user=args.user)
        for t in rows:
            print(
                f"{t.id:>6}  {t.user:<20} {t.state(now):<8} created {_oslo(t.created_at)}  "
                f"expires {_oslo(t.expires_at) if t.expires_at else 'never'}  "
                f"last used {_oslo(t.last_used_at)}  {t.label}".rstrip()
            )
        if not rows:
            print("no tokens", file=sys.stderr)
        return 0

    async def revoke(session: AsyncSession) -> int:
        name = await accounts.revoke_token(session, token_id=args.id)
        print(f"token {args.id} of {name} revoked")
        return 0

    verb = args.token_command
    if verb == "create":
        if args.expires_days is not None and args.expires_days < 0:
            print(f"crisis {command}: --expires-days is 0 (no expiry) or more", file=sys.stderr)
            return 2
        return await _accounts(settings, command, create)
    return await _accounts(settings, command, listing if verb == "list" else revoke)


async def ensure_demo_login(settings: Settings) -> tuple[str, str] | None:
    """On a fresh database create an admin with a random password and keep it in the data dir."""
    path = settings.data_dir / LOGIN_FILE
    engine = make_engine(settings)
    try:
        async with make_sessionmaker(engine)() as session:
            from sqlmodel import select

            from crisis.accounts.models import User

            if (await session.exec(select(User))).first() is None:
                password = secrets.token_urlsafe(12)
                await accounts.add_user(session, name="admin", role="admin", password=password)
                await session.commit()
                path.write_text(f"admin\n{password}\n")
                path.chmod(0o600)
    finally:
        await engine.dispose()
    if path.exists():
        name, password = path.read_text().split("\n")[:2]
        return name, password
    return None


#: The demo's exercise controller account (created by ``crisis up --demo``) and its scenario.
DEMO_ACCOUNT = "ovelse-demo"
DEMO_SCENARIO = "demo-kort"


async def demo_token(settings: Settings) -> str:
    """A fresh API token of the local demo exercise-controller account (created if absent)."""
    engine = make_engine(settings)
    try:
        async with make_sessionmaker(engine)() as session:
            from sqlmodel import select

            from crisis.accounts.models import User

            if (await session.exec(select(User).where(User.name == DEMO_ACCOUNT))).first() is None:
                await accounts.add_user(
                    session,
                    name=DEMO_ACCOUNT,
                    role="exercise-controller",
                    password=secrets.token_urlsafe(18),
                )
            token = await accounts.create_token(
                session, name=DEMO_ACCOUNT, label="crisis up --demo", expires_days=1
            )
            await session.commit()
            return token
    finally:
        await engine.dispose()


def _api(url: str, token: str, method: str, path: str, body: object = None) -> object:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 (loopback)
        url + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=15) as response:  # noqa: S310
        raw = response.read()
    return json.loads(raw) if raw else None


def demo_keeps_participants(settings: Settings) -> bool:
    """Only with the shipped recipients file, whose every contact is the local inbox: the
    demo's participants then receive in /inbox. A real file: nobody is registered."""
    return settings.notify_config is None


def start_demo(settings: Settings, url: str) -> str:
    """Create and start the two-minute demo scenario. With the shipped recipients file its
    participants receive in the local inbox (nothing leaves the machine); with a real one
    none is registered, so every exercise message is blocked and logged."""
    token = asyncio.run(demo_token(settings))
    stamp = datetime.now(UTC).astimezone(ZoneInfo("Europe/Oslo")).strftime("%Y%m%d-%H%M%S")
    created = _api(
        url,
        token,
        "POST",
        "/api/v1/exercises",
        {"scenario": DEMO_SCENARIO, "speed": 1.0, "id": f"ovelse-demo-{stamp}"},
    )
    assert isinstance(created, dict)
    exercise_id = str(created["id"])
    if not demo_keeps_participants(settings):
        exercise = _api(url, token, "GET", f"/api/v1/exercises/{exercise_id}")
        assert isinstance(exercise, dict)
        for part in exercise["participants"]:
            person = urllib.parse.quote(part["person_id"], safe="")
            _api(url, token, "DELETE", f"/api/v1/exercises/{exercise_id}/participants/{person}")
    _api(url, token, "POST", f"/api/v1/exercises/{exercise_id}/start", {})
    return exercise_id


# --- processes ------------------------------------------------------------------------


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (loopback)
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


#: Where ``crisis up`` writes the broker's host:port (in the data dir) for other processes.
BROKER_ADDR_FILE = "broker.addr"


def up(args: argparse.Namespace) -> int:
    """Broker (unless CRISIS_KAFKA_BOOTSTRAP), workers, dispatcher, web, the log anchor and the
    bridges that are configured (CRISIS_MQTT_URL, CRISIS_MEDIA_FEEDS) as one supervised tree
    (crisis.supervisor): a dead part is restarted; Ctrl-C drains and stops."""
    from crisis.kafka.producer import OUTBOX_FILE
    from crisis.runtime.heartbeat import DRAINING_FILE
    from crisis.runtime.supervisor import Part, Supervisor

    settings = _settings(args.data_dir)
    try:
        load_organisation(settings.organisation)
    except OrganisationError as exc:
        print(f"crisis up: the organisation file is invalid: {exc}", file=sys.stderr)
        return 2
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    logs = settings.data_dir / "logs"
    logs.mkdir(exist_ok=True)
    run_dir = settings.effective_run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / DRAINING_FILE).unlink(missing_ok=True)  # left by a tree that was killed

    env = dict(
        os.environ,
        CRISIS_DATA_DIR=str(settings.data_dir.resolve()),
        CRISIS_RUN_DIR=str(run_dir.resolve()),
    )
    broker = None
    parts: list[Part] = []
    if not settings.kafka_bootstrap:
        from crisis.kafka.broker import EmbeddedBroker

        broker = EmbeddedBroker(log_path=logs / "broker.log", die_with_parent=True)
        env["CRISIS_KAFKA_BOOTSTRAP"] = broker.bootstrap
        # Memory storage: the broker's acknowledgement keeps nothing, the log must.
        env["CRISIS_OUTBOX_UNTIL_LOGGED"] = "1"
        parts.append(Part("broker", None))
    else:
        env["CRISIS_KAFKA_BOOTSTRAP"] = settings.kafka_bootstrap
    py = sys.executable
    parts += [
        # Two worker processes: ingest never waits on the playbook engine, and both cores work.
        Part("ingest", [py, "-m", "streams", "worker", "--role", "ingest"]),
        Part("reactions", [py, "-m", "streams", "worker", "--role", "reactions"]),
        Part("dispatcher", [py, "-m", "notifiers"]),
        Part("web", [py, "-m", "web", "--host", args.host, "--port", str(args.port)]),
        Part("anchor", [py, "-m", "crisis.cli", "log", "anchor", "--every", "5"]),
    ]
    # The bridges read their settings (and the broker address set above) from the environment.
    if settings.mqtt_url:
        parts.append(Part("bridge-mqtt", [py, "-m", "streams.bridges.mqtt"]))
    if settings.media_feeds:
        parts.append(Part("bridge-media", [py, "-m", "streams.bridges.media"]))
    addr_file = settings.data_dir / BROKER_ADDR_FILE
    supervisor = Supervisor(
        parts=parts,
        env=env,
        run_dir=run_dir,
        logs=logs,
        outbox=settings.data_dir / OUTBOX_FILE,
        broker=broker,
        drain_seconds=args.drain_seconds,
        say=lambda line: print(line, file=sys.stderr, flush=True),
    )

    def _on_signal(signum: int, _frame: object) -> None:
        supervisor.signals += 1

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        if broker is not None:
            supervisor.start(["broker"])
            print(f"embedded Kafka-protocol broker (Tansu) on {broker.bootstrap}", flush=True)
        addr_file.write_text(env["CRISIS_KAFKA_BOOTSTRAP"] + "\n")
        print(f"Kafka: CRISIS_KAFKA_BOOTSTRAP={env['CRISIS_KAFKA_BOOTSTRAP']}", flush=True)
        print(f"       (also in {addr_file})", flush=True)
        asyncio.run(migrate_database(settings))
        login = asyncio.run(ensure_demo_login(settings))
        supervisor.start([p.name for p in parts if p.argv is not None])
        url = f"http://{args.host}:{args.port}"
        healthy = False
        deadline = time.monotonic() + 60
        while not healthy and time.monotonic() < deadline and not supervisor.signals:
            supervisor.tick()
            healthy = _http_ok(f"{url}/healthz")
            if not healthy:
                time.sleep(0.2)
        if supervisor.signals:
            return 0
        if not healthy:
            print("crisis up: the web server did not become healthy", file=sys.stderr)
            return 1
        print(f"\nSituasjonsbilde / board: {url}/", flush=True)
        if login:
            print(f"Innlogging / login: {login[0]} / {login[1]}", flush=True)
        if getattr(args, "demo", False):
            try:
                exercise_id = start_demo(settings, url)
            except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
                print(f"crisis up: the demo exercise did not start: {exc}", file=sys.stderr)
            else:
                print(
                    f"ØVELSE {exercise_id} (demo, ingen deltakere: alle utsendelser blokkeres"
                    " / no participants: every delivery is blocked)",
                    flush=True,
                )
                print(f"Øvingsleder / controller: {url}/exercises/{exercise_id}", flush=True)
        for name in ("bridge-mqtt", "bridge-media"):
            if name in supervisor.parts:
                print(f"Bro / bridge: {name} (logs/{name}.log)", flush=True)
        print("Ctrl-C stopper alt / stops everything.", flush=True)
        while not supervisor.signals:
            supervisor.tick()
            time.sleep(0.2)
        supervisor.drain()
        return 0
    finally:
        supervisor.stop()
        addr_file.unlink(missing_ok=True)
        print("crisis up: stopped", flush=True)


def _exec_module(module: str, extra: list[str]) -> int:
    os.execv(sys.executable, [sys.executable, "-m", module, *extra])  # noqa: S606
    return 0  # pragma: no cover


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crisis", description="Kriminalomsorgen crisis log")
    sub = parser.add_subparsers(dest="command", required=True)

    p_up = sub.add_parser("up", help="broker + worker + web, all in one")
    p_up.add_argument("--host", default="127.0.0.1")
    p_up.add_argument("--port", type=int, default=8000)
    p_up.add_argument("--data-dir", default=None)
    p_up.add_argument(
        "--drain-seconds",
        type=float,
        default=30.0,
        help="on Ctrl-C, how long to wait for the outbox to reach the crisis log",
    )
    p_up.add_argument(
        "--demo",
        action="store_true",
        help="also start the two-minute demo exercise (no participants: nothing is delivered)",
    )

    p_worker = sub.add_parser(
        "worker", help="the stream worker alone (needs CRISIS_KAFKA_BOOTSTRAP)"
    )
    p_worker.add_argument("--role", choices=WORKER_ROLES, default="all", help=WORKER_ROLE_HELP)
    p_web = sub.add_parser("web", help="the web server alone")
    p_web.add_argument("--host", default=None)
    p_web.add_argument("--port", type=int, default=None)

    sub.add_parser("migrate", help="bring the database schema up to date")

    p_log = sub.add_parser("log", help="crisis-log tools")
    log_sub = p_log.add_subparsers(dest="log_command", required=True)
    p_verify = log_sub.add_parser("verify", help="check every hash chain and every anchored head")
    p_verify.add_argument("--incident", default=None, help="check this incident's chain only")
    p_verify.add_argument(
        "--head", default=None, metavar="HASH", help="a report's head hash: must be in the chain"
    )
    p_anchor = log_sub.add_parser(
        "anchor", help="checkpoint the incidents' heads into DATA_DIR/log-anchor.jsonl"
    )
    p_anchor.add_argument(
        "--every",
        type=float,
        default=None,
        metavar="SECONDS",
        help="keep checkpointing until SIGTERM/SIGINT (then once more)",
    )

    p_report = sub.add_parser("report", help="export an incident's report (pdf, html, json)")
    p_report.add_argument("incident_id", metavar="INCIDENT_ID")
    p_report.add_argument("--format", choices=("pdf", "html", "json"), default="pdf")
    p_report.add_argument("-o", "--output", required=True, metavar="FILE")
    p_report.add_argument("--lang", choices=("nb", "en"), default="nb")
    p_report.add_argument(
        "--as",
        dest="as_user",
        default=None,
        metavar="USERNAME",
        help="mask as this user's need-to-know allows (default: everything masked)",
    )

    p_backup = sub.add_parser("backup", help="database, log anchor, outbox and key → one archive")
    p_backup.add_argument("-o", "--output", required=True, metavar="FILE", help="a new .tar.gz")
    p_restore = sub.add_parser(
        "restore", help="a backup archive → an empty data directory / empty database"
    )
    p_restore.add_argument("archive", metavar="FILE")

    p_user = sub.add_parser("user", help="accounts")
    user_sub = p_user.add_subparsers(dest="user_command", required=True)
    p_add = user_sub.add_parser("add", help="add a user")
    p_add.add_argument("name")
    p_add.add_argument("--role", required=True)
    p_add.add_argument("--unit", default=None)
    p_add.add_argument("--region", default=None)
    p_add.add_argument("--password", default=None)
    for verb, text in (
        ("disable", "refuse a user's logins and tokens and end their sessions"),
        ("enable", "let a disabled user in again"),
    ):
        user_sub.add_parser(verb, help=text).add_argument("name")
    p_passwd = user_sub.add_parser("passwd", help="set a new password; ends the user's sessions")
    p_passwd.add_argument("name")
    p_passwd.add_argument(
        "--password-stdin", action="store_true", help="read it from the first line of stdin"
    )

    p_audit = sub.add_parser("audit", help="audits")
    audit_sub = p_audit.add_subparsers(dest="audit_command", required=True)
    p_access = audit_sub.add_parser("access", help="unmasked reads of personal references")
    p_access.add_argument("--actor", default=None, help="a user name (or user:NAME)")
    p_access.add_argument("--incident", default=None, help="an incident id")
    p_access.add_argument("--limit", type=int, default=100, help="rows, newest first")

    p_token = sub.add_parser("token", help="API tokens")
    token_sub = p_token.add_subparsers(dest="token_command", required=True)
    p_create = token_sub.add_parser("create", help="create a bearer token for a user")
    p_create.add_argument("name")
    p_create.add_argument("--label", default="")
    p_create.add_argument(
        "--expires-days",
        type=int,
        default=None,
        metavar="N",
        help="days until it expires; 0: never (default: CRISIS_TOKEN_EXPIRES_DAYS, 365)",
    )
    p_tlist = token_sub.add_parser("list", help="tokens (never their secrets)")
    p_tlist.add_argument("--user", default=None, help="only this user's")
    p_revoke = token_sub.add_parser("revoke", help="revoke a token for good")
    p_revoke.add_argument("id", type=int, help="the id `crisis token list` shows")
    # --- bridges (ingest): run streams/bridges/*.py as their own process ---------------
    p_bridge = sub.add_parser("bridge", help="bridges: MQTT sensors and media feeds → events")
    bridge_sub = p_bridge.add_subparsers(dest="bridge_command", required=True)
    p_mqtt = bridge_sub.add_parser("mqtt", help="MQTT kriminalomsorgen/<unit>/<kind>/<id>")
    p_mqtt.add_argument(
        "--url", default=None, help="mqtt://HOST:PORT[/filter] (default: CRISIS_MQTT_URL)"
    )
    p_mqtt.add_argument("--topic", default=None, help="subscription filter")
    p_mqtt.add_argument("--client-id", default=None, help="persistent MQTT session id")
    p_media = bridge_sub.add_parser("media", help="RSS/Atom/JSON media-monitoring feeds")
    p_media.add_argument(
        "--feed", action="append", help="feed URL (repeatable; default: CRISIS_MEDIA_FEEDS)"
    )
    p_media.add_argument("--interval", type=float, default=None, help="seconds between polls")
    p_media.add_argument("--once", action="store_true", help="poll once and exit")
    _plugin_commands(sub)
    return parser


#: Entry-point group of subcommands from the packages above the core (which this module
#: may not import): each is a ``register(subparsers)`` that sets ``handler`` on its parsers.
COMMANDS_GROUP = "crisis.commands"


def _plugin_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for ep in sorted(entry_points(group=COMMANDS_GROUP), key=lambda e: e.name):
        ep.load()(sub)


def _bridge_args(args: argparse.Namespace) -> list[str]:
    if args.bridge_command == "mqtt":
        extra = ["--url", args.url] if args.url else []
        extra += ["--topic", args.topic] if args.topic else []
        extra += ["--client-id", args.client_id] if args.client_id else []
        return extra
    extra = [item for feed in args.feed or () for item in ("--feed", feed)]
    extra += ["--interval", str(args.interval)] if args.interval is not None else []
    extra += ["--once"] if args.once else []
    return extra


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is not None:
        return handler(args)
    if args.command == "up":
        return up(args)
    if args.command == "worker":
        return _exec_module("streams", ["worker", "--role", args.role])
    if args.command == "web":
        extra = []
        if args.host:
            extra += ["--host", args.host]
        if args.port:
            extra += ["--port", str(args.port)]
        return _exec_module("web", extra)
    if args.command == "bridge":
        return _exec_module(f"streams.bridges.{args.bridge_command}", _bridge_args(args))
    settings = Settings()
    if args.command == "migrate":
        asyncio.run(migrate_database(settings))
        return 0
    if args.command == "log":
        return _log(settings, args)
    if args.command == "report":
        return asyncio.run(_report(settings, args))
    if args.command == "backup":
        return backup(settings, Path(args.output))
    if args.command == "restore":
        return restore(settings, Path(args.archive))
    if args.command == "user":
        return asyncio.run(_user(settings, args))
    if args.command == "audit":
        return asyncio.run(_audit_access(settings, args))
    if args.command == "token":
        return asyncio.run(_token(settings, args))
    return 2  # pragma: no cover


def entrypoint() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entrypoint()
