"""``crisis exercise …``: a thin client of the exercises API (registered through the
``crisis.commands`` entry point, since the core's CLI may not import this package).

``run FILE|NAME`` creates and starts an exercise and follows it with a progress bar on stderr
until it ends (exit 0), or is refused (exit 1); ``--dry-run`` checks the scenario here and
prints its schedule without a server. ``participants add|remove``, ``list`` and ``end`` call
the matching endpoints. The server is ``--url`` (or ``CRISIS_URL``, default the local one),
the bearer token ``--token`` (or ``CRISIS_TOKEN``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, TextIO

from crisis.domain.organisation import load_organisation
from crisis.settings import Settings
from playbooks.exercises.runner import summary
from playbooks.exercises.scenario import Scenario, ScenarioError, load_scenario, shipped

DEFAULT_URL = "http://127.0.0.1:8000"
#: Seconds between two looks at a running exercise.
POLL_SECONDS = 0.5
BAR_WIDTH = 24


class ApiError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        self.status, self.body = status, body
        errors = body.get("errors") if isinstance(body, dict) else None
        lines = [str(e.get("message", e)) for e in errors or []] or [str(body)]
        super().__init__(f"HTTP {status}: " + "\n  ".join(lines))


class Client:
    """JSON over HTTP with a bearer token (stdlib only)."""

    def __init__(self, url: str, token: str, *, timeout: float = 30.0) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"--url {url!r}: give http(s)://HOST[:PORT]")
        self.url, self.token, self.timeout = url.rstrip("/"), token, timeout

    def call(self, method: str, path: str, body: Any = None, *, raw: bool = False) -> Any:
        """The answer's JSON, or with ``raw`` its bytes (a document: PDF, HTML)."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 (scheme checked above)
            self.url + path,
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                body_bytes = response.read()
        except urllib.error.HTTPError as exc:
            body_bytes = exc.read()
            try:
                parsed = json.loads(body_bytes)
            except ValueError:
                parsed = body_bytes.decode(errors="replace")
            raise ApiError(exc.code, parsed) from None
        if raw:
            return body_bytes
        return json.loads(body_bytes) if body_bytes else None


# --- the command line ------------------------------------------------------------------


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``exercise`` and its subcommands to the ``crisis`` command."""
    p = sub.add_parser("exercise", help="scripted exercises: run, participants, list, end")
    ex = p.add_subparsers(dest="exercise_command", required=True)

    def server(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--url", default=None, help=f"the server (CRISIS_URL, {DEFAULT_URL})")
        parser.add_argument("--token", default=None, help="bearer token (CRISIS_TOKEN)")

    run = ex.add_parser("run", help="create and start an exercise, follow it until it ends")
    run.add_argument("scenario", metavar="FILE|NAME", help="a scenario file or a shipped name")
    run.add_argument("--speed", type=float, default=1.0, help="scenario seconds per second")
    run.add_argument(
        "--start-at", default=None, metavar="T", help="start part-way: a scenario offset (10m)"
    )
    run.add_argument("--id", default=None, help="the exercise id (default from the scenario)")
    run.add_argument(
        "--participant",
        action="append",
        default=[],
        metavar="PERSON",
        help="one more participant (a person of the recipients file; repeatable)",
    )
    run.add_argument(
        "--dry-run", action="store_true", help="check it here and print the schedule; no server"
    )
    server(run)
    run.set_defaults(handler=_run)

    parts = ex.add_parser("participants", help="register or unregister a participant")
    parts.add_argument("action", choices=("add", "remove"))
    parts.add_argument("exercise_id", metavar="ID")
    parts.add_argument("person", metavar="PERSON")
    parts.add_argument("--account", action="store_true", help="PERSON is a user account name")
    server(parts)
    parts.set_defaults(handler=_participants)

    listing = ex.add_parser("list", help="the exercises, newest first")
    server(listing)
    listing.set_defaults(handler=_list)

    end = ex.add_parser("end", help="end an exercise (its incidents are closed)")
    end.add_argument("exercise_id", metavar="ID")
    end.add_argument("--reason", default=None)
    server(end)
    end.set_defaults(handler=_end)

    report = ex.add_parser("report", help="write an exercise's evaluation (pdf, html, json)")
    report.add_argument("exercise_id", metavar="ID")
    report.add_argument("--format", choices=("pdf", "html", "json"), default="pdf")
    report.add_argument("--lang", choices=("nb", "en"), default="nb")
    report.add_argument("-o", "--output", default=None, metavar="FILE", help="- for stdout")
    server(report)
    report.set_defaults(handler=_report)


def _client(args: argparse.Namespace) -> Client | None:
    token = args.token or os.environ.get("CRISIS_TOKEN")
    if not token:
        print("crisis exercise: give --token or set CRISIS_TOKEN", file=sys.stderr)
        return None
    try:
        return Client(args.url or os.environ.get("CRISIS_URL") or DEFAULT_URL, token)
    except ValueError as exc:
        print(f"crisis exercise: {exc}", file=sys.stderr)
        return None


def _refused(what: str, exc: Exception) -> int:
    print(f"crisis exercise {what}: {exc}", file=sys.stderr)
    return 1


def _scenario_text(arg: str) -> str | None:
    """A file's text, or None when ``arg`` names a shipped scenario (the server has it)."""
    path = Path(arg)
    if arg in shipped() and not path.is_file():
        return None
    return path.read_text(encoding="utf-8")


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return (f"{hours}:" if hours else "") + f"{rest // 60:02d}:{rest % 60:02d}"


def print_schedule(scenario: Scenario, *, speed: float, out: TextIO) -> None:
    """The injects (scenario time, wall time at ``speed``) and the expected actions."""
    print(f"{scenario.id}: {scenario.title} ({scenario.title_en})", file=out)
    length = scenario.duration.total_seconds() if scenario.duration else None
    if length is not None:
        print(
            f"duration {_clock(length)} scenario, {_clock(length / speed)} at x{speed:g}", file=out
        )
    print("injects (scenario / wall):", file=out)
    for inject in sorted(scenario.injects, key=lambda i: i.at):
        at = inject.at.total_seconds()
        print(
            f"  {_clock(at):>8} / {_clock(at / speed):>8}  {inject.type:<6} {inject.id}: "
            f"{summary(inject)}",
            file=out,
        )
    if scenario.expected:
        print("expected actions:", file=out)
    for action in scenario.expected:
        within = f"within {_clock(action.within.total_seconds())}" if action.within else "always"
        extra = f" to {action.to}" if action.to else f" card {action.card}" if action.card else ""
        print(f"  {action.id}: {action.action}{extra} ({within})", file=out)
    if scenario.participants:
        who = ", ".join(
            f"{p.id}" + (" (account)" if p.kind == "account" else "") for p in scenario.participants
        )
        print(f"participants: {who}", file=out)


def _dry_run(args: argparse.Namespace) -> int:
    settings = Settings()
    try:
        org = load_organisation(settings.organisation)
        source: str | Path = shipped().get(args.scenario) or Path(args.scenario)
        if isinstance(source, Path) and not source.is_file():
            return _refused(
                "run", FileNotFoundError(f"no file or shipped scenario {args.scenario!r}")
            )
        scenario = load_scenario(source, org=org)
    except ScenarioError as exc:
        print(str("\n".join(str(p) for p in exc.problems)), file=sys.stderr)
        return 1
    print_schedule(scenario, speed=args.speed, out=sys.stdout)
    return 0


def progress_line(exercise: dict[str, Any]) -> str:
    """``[#####-----] injects 2/4 (due 0) · expected met –, missed – · 01:20/02:00 · running``."""
    p = exercise["progress"]
    injects, expected = p["injects"], p["expected"]
    total = injects["total"] or 1
    done = injects["sent"] + injects["skipped"]
    filled = round(BAR_WIDTH * done / total)
    met = "–" if expected.get("met") is None else expected["met"]
    missed = "–" if expected.get("missed") is None else expected["missed"]
    length = f"/{_clock(p['duration_seconds'])}" if p["duration_seconds"] is not None else ""
    return (
        f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] injects {injects['sent']}/"
        f"{injects['total']} (due {injects['due']}) · expected met {met}, missed {missed} · "
        f"{_clock(p['scenario_seconds'])}{length} · {exercise['state']}"
    )


def follow(client: Client, exercise_id: str, *, out: TextIO, poll: float = POLL_SECONDS) -> int:
    """Show the progress until the exercise ends; 0 then."""
    tty = out.isatty()
    last = ""
    while True:
        exercise = client.call("GET", f"/api/v1/exercises/{urllib.parse.quote(exercise_id)}")
        line = progress_line(exercise)
        if line != last:
            print(("\r" + line) if tty else line, end="" if tty else "\n", file=out, flush=True)
            last = line
        if exercise["state"] == "ended":
            if tty:
                print(file=out)
            print(f"ended: {exercise.get('end_reason') or ''}", file=out, flush=True)
            return 0
        time.sleep(poll)


def _run(args: argparse.Namespace) -> int:
    if args.dry_run:
        return _dry_run(args)
    client = _client(args)
    if client is None:
        return 2
    try:
        text = _scenario_text(args.scenario)
    except OSError as exc:
        return _refused("run", exc)
    body: dict[str, Any] = {
        "scenario": text if text is not None else args.scenario,
        "speed": args.speed,
        "participants": [{"person": p} for p in args.participant],
    }
    if args.id:
        body["id"] = args.id
    try:
        exercise_id = client.call("POST", "/api/v1/exercises", body)["id"]
        start = {"start_at": args.start_at} if args.start_at else {}
        client.call("POST", f"/api/v1/exercises/{exercise_id}/start", start)
    except (ApiError, urllib.error.URLError, OSError) as exc:
        return _refused("run", exc)
    print(f"exercise {exercise_id} started (x{args.speed:g})", file=sys.stderr, flush=True)
    try:
        return follow(client, exercise_id, out=sys.stderr)
    except KeyboardInterrupt:
        client.call(
            "POST", f"/api/v1/exercises/{exercise_id}/end", {"reason": "avbrutt / interrupted"}
        )
        print(f"\nexercise {exercise_id} ended (interrupted)", file=sys.stderr)
        return 130
    except (ApiError, urllib.error.URLError, OSError) as exc:
        return _refused("run", exc)


def _participants(args: argparse.Namespace) -> int:
    client = _client(args)
    if client is None:
        return 2
    base = f"/api/v1/exercises/{urllib.parse.quote(args.exercise_id)}/participants"
    try:
        if args.action == "add":
            kind = "account" if args.account else "person"
            client.call("POST", base, {kind: args.person})
        else:
            client.call("DELETE", f"{base}/{urllib.parse.quote(args.person)}")
    except (ApiError, urllib.error.URLError, OSError) as exc:
        return _refused("participants", exc)
    verb = "registered for" if args.action == "add" else "unregistered from"
    print(f"{args.person} {verb} {args.exercise_id}")
    return 0


def _list(args: argparse.Namespace) -> int:
    client = _client(args)
    if client is None:
        return 2
    try:
        rows = client.call("GET", "/api/v1/exercises")
    except (ApiError, urllib.error.URLError, OSError) as exc:
        return _refused("list", exc)
    for row in rows:
        injects = row["progress"]["injects"]
        print(
            f"{row['id']}\t{row['state']}\tx{row['speed']:g}\t"
            f"{injects['sent']}/{injects['total']} injects\t{row['title']}"
        )
    return 0


def _end(args: argparse.Namespace) -> int:
    client = _client(args)
    if client is None:
        return 2
    body = {"reason": args.reason} if args.reason else {}
    try:
        client.call("POST", f"/api/v1/exercises/{urllib.parse.quote(args.exercise_id)}/end", body)
    except (ApiError, urllib.error.URLError, OSError) as exc:
        return _refused("end", exc)
    print(f"exercise {args.exercise_id} ended; its incidents are closed")
    return 0


def _report(args: argparse.Namespace) -> int:
    """``crisis exercise report ID``: the evaluation from the API into a file (default
    ``ovelse-evaluering-ID.FORMAT``) or stdout; 0 written, 1 refused, 2 no token."""
    client = _client(args)
    if client is None:
        return 2
    query = urllib.parse.urlencode({"format": args.format, "lang": args.lang})
    path = f"/api/v1/exercises/{urllib.parse.quote(args.exercise_id)}/evaluation?{query}"
    try:
        data = client.call("GET", path, raw=True)
    except (ApiError, urllib.error.URLError, OSError) as exc:
        return _refused("report", exc)
    if args.output == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return 0
    out = Path(args.output or f"ovelse-evaluering-{args.exercise_id}.{args.format}")
    out.write_bytes(data)
    print(f"{out}: {len(data)} bytes", file=sys.stderr)
    return 0
