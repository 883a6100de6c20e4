"""Schemathesis against the running app (issue 15): every operation of /openapi.json, no 5xx.

A real uvicorn server (``tests/boardserver.py``) on SQLite (and PostgreSQL when configured)
with the embedded broker, so ingest really takes events instead of answering 503. Before the
run the test opens incidents, a situation report and a notification update; the fuzzer draws
path ids, units and groups from those (schemathesis dictionaries) as often as it makes them
up, so requests get past the 404 into the routes. The run is deterministic (a fixed seed) and
sized by ``CRISIS_FUZZ_EXAMPLES`` (cases per operation and phase); ``make fuzz`` runs it larger.

Only ``not_a_server_error`` fails the run: the issue's bar is zero 5xx. The raw-body routes
(events, reports, CAP, inbound SMS) get a bounded body schema of the test's own so that their
parsers are fuzzed too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import func, select

from crisis.kafka import topics
from crisis.kafka.broker import EmbeddedBroker
from crisis.log.models import Incident, LogEntry
from crisis.sources import jsonlimits
from crisis.sources.events import event_json_schema
from crisis.sources.incident_types import INCIDENT_TYPE_LABELS, REPORT_CATEGORIES
from crisis.store.db import make_engine, make_sessionmaker
from notifiers.models import OutboxMessage
from tests.boardserver import BoardServer, run_async, start_board_server
from tests.conftest import ApiHarness
from tests.ingest_support import event, ingest_api, ingest_settings, read_topic

#: Cases per operation in each generating phase; ``make fuzz`` raises it.
EXAMPLES = int(os.environ.get("CRISIS_FUZZ_EXAMPLES", "20"))
SEED = int(os.environ.get("CRISIS_FUZZ_SEED", "15"))
#: The coverage phase of POST /api/v1/events (one branch per event type, two media types)
#: outweighs all other operations together: ``make fuzz`` runs it, ``make test`` does not.
EVENTS_COVERAGE = os.environ.get("CRISIS_FUZZ_EVENTS_COVERAGE", "") == "1"
UNIT = "agder-froland"
USERS: list[tuple[str, str, str | None, str | None]] = [
    ("admin", "admin", None, None),
    ("op", "operator", UNIT, None),
]
AGDER = "57.95,7.0 57.95,8.3 58.4,9.3 58.9,9.2 58.9,7.0 57.95,7.0"
CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
#: Drawn now and then into any string or integer the fuzzer makes: what broke this API before
#: (a NUL, which PostgreSQL's text refuses; ids past the integer columns) and its neighbours.
HOSTILE_STRINGS = ["\x00", "a\x00b", "\\u0000", "%00", "' OR '1'='1", "../../etc/passwd", "\u202e"]
HOSTILE_INTEGERS = ["0", "-1", "2147483648", "9223372036854775808", "99999999999999999999"]


# --- the schema the fuzzer reads ------------------------------------------------------------


def _event_schema() -> dict[str, Any]:
    """The published event schema as one branch per type (schemathesis skips ``if``/``then``),
    its ``$defs`` reachable from inside the OpenAPI document."""
    text = json.dumps(event_json_schema())
    text = text.replace('"#/$defs/', '"#/components/schemas/CrisisEvent/$defs/')
    published: dict[str, Any] = json.loads(text)
    envelope = {k: v for k, v in published.items() if k in ("type", "properties", "required")}
    branches = []
    for rule in published["allOf"]:
        kind = rule["if"]["properties"]["type"]["const"]
        data = rule["then"]["properties"]["data"]
        properties = {**envelope["properties"], "type": {"const": kind}, "data": data}
        branches.append({**envelope, "properties": properties})
    return {"anyOf": branches, "$defs": published["$defs"]}


def _report_schema() -> dict[str, Any]:
    text = {"type": "string", "maxLength": 300}
    return {
        "type": "object",
        "properties": {
            "category": {"enum": sorted(REPORT_CATEGORIES)},
            "place": text,
            "what": text,
            "affected": {"type": "integer"},
            "severity": {"type": "integer"},
            "unit": {"type": "string"},
            "exercise": {"type": "string"},
            "time": {"type": "string", "format": "date-time"},
            "id": {"type": "string"},
        },
    }


def _cap_schema() -> dict[str, Any]:
    """A CAP 1.2 alert as XML (schemathesis writes objects with ``xml`` hints as XML)."""
    area = {
        "type": "object",
        "properties": {
            "areaDesc": {"type": "string"},
            "polygon": {"anyOf": [{"const": AGDER}, {"type": "string"}]},
            "circle": {"type": "string"},
        },
        "required": ["areaDesc"],
    }
    info = {
        "type": "object",
        "properties": {
            "language": {"const": "nb-NO"},
            "category": {"enum": ["Met", "Safety", "Fire", "Other"]},
            "event": {"type": "string"},
            "urgency": {"enum": ["Immediate", "Expected", "Future", "Past", "Unknown"]},
            "severity": {"enum": ["Extreme", "Severe", "Moderate", "Minor", "Unknown"]},
            "certainty": {"enum": ["Observed", "Likely", "Possible", "Unlikely", "Unknown"]},
            "headline": {"type": "string"},
            "area": area,
        },
        "required": ["category", "event", "urgency", "severity", "certainty", "area"],
    }
    return {
        "type": "object",
        "xml": {"name": "alert", "namespace": CAP_NS},
        "properties": {
            "identifier": {"type": "string"},
            "sender": {"type": "string"},
            "sent": {"type": "string", "format": "date-time"},
            "status": {"enum": ["Actual", "Exercise", "System", "Test", "Draft"]},
            "msgType": {"enum": ["Alert", "Update", "Cancel", "Ack", "Error"]},
            "scope": {"enum": ["Public", "Restricted", "Private"]},
            "references": {"type": "string"},
            "info": info,
        },
        "required": ["identifier", "sender", "sent", "status", "msgType", "scope"],
    }


def fuzz_schema(openapi: dict[str, Any]) -> dict[str, Any]:
    """The app's /openapi.json with a request body for each route that reads its raw body."""
    schemas = openapi.setdefault("components", {}).setdefault("schemas", {})
    schemas["CrisisEvent"] = _event_schema()
    event = {"$ref": "#/components/schemas/CrisisEvent"}
    events = {"anyOf": [event, {"type": "array", "items": event, "minItems": 1, "maxItems": 3}]}
    report = _report_schema()
    bodies = {
        "/api/v1/events": {
            "application/json": events,
            "application/cloudevents-batch+json": events,
        },
        "/api/v1/reports": {
            "application/json": report,
            "application/x-www-form-urlencoded": report,
        },
        "/api/v1/cap": {"application/xml": _cap_schema()},
        "/api/v1/notifications/inbound": {
            "application/x-www-form-urlencoded": {
                "type": "object",
                "properties": {
                    "From": {"type": "string"},
                    "To": {"type": "string"},
                    "Body": {"type": "string"},
                    "MessageSid": {"type": "string"},
                },
            }
        },
    }
    for path, content in bodies.items():
        operation = openapi["paths"][path]["post"]
        # events, reports and CAP declare their bodies (issue 20); these stay, bounded for speed
        operation["requestBody"] = {
            "required": True,
            "content": {media: {"schema": schema} for media, schema in content.items()},
        }
    return openapi


# --- the data the fuzzer's ids come from ----------------------------------------------------


def _seed(server: BoardServer) -> dict[str, list[Any]]:
    """Incidents, a situation report and an update through the API; their ids."""

    def ok(r: Any) -> Any:
        assert r.status_code < 300, r.text
        return r.json()

    incidents = []
    for kind, title in (("fire", "Brann i avdeling A"), ("escape", "Rømning fra uteområdet")):
        body = {"type": kind, "title": title, "unit": UNIT, "severity": 4}
        incidents.append(ok(server.api("POST", "/api/v1/incidents", "op", json=body))["id"])
    first = incidents[0]
    ok(
        server.api(
            "POST",
            f"/api/v1/incidents/{first}/entries",
            "op",
            json={"kind": "observation", "text": "Røyk i korridoren"},
        )
    )
    sitrep = ok(server.api("POST", f"/api/v1/incidents/{first}/sitreps", "op"))["id"]
    update = ok(
        server.api(
            "POST",
            "/api/v1/notifications/updates",
            "op",
            json={
                "incident_id": first,
                "groups": ["staff", "leaders"],
                "facts": {"title": "Brann", "known": "Røyk i avdeling A.", "actions": "Evakuert."},
                "next_update_at": (datetime.now(UTC) + timedelta(minutes=30)).isoformat(),
            },
        )
    )["id"]
    messages = run_async(lambda: _messages(server.env["CRISIS_DATABASE_URL"]))
    return {
        "incidents": incidents,
        "sitreps": [sitrep],
        "updates": [update],
        "messages": [m for m, _ in messages] or [1],
        "codes": [c for _, c in messages if c] or ["none"],
    }


async def _messages(url: str) -> list[tuple[int, str | None]]:
    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine)() as session:
            rows = (await session.exec(select(OutboxMessage))).all()
            return [(int(m.id), m.ack_code) for m in rows if m.id is not None]
    finally:
        await engine.dispose()


def _toml(value: Any) -> str:
    """A TOML value for strings, numbers and lists of them (JSON's ASCII escapes are TOML's)."""
    return json.dumps(value)


def fuzz_config(
    seeded: dict[str, list[Any]], units: list[str], *, events_coverage: bool = EVENTS_COVERAGE
) -> str:
    """schemathesis.toml: dictionaries of real values and where the fuzzer draws from them."""
    real = {
        **seeded,
        "units": units,
        "incident_types": sorted(INCIDENT_TYPE_LABELS),
        "groups": ["staff", "leaders", "families", "ministry", "media", "public", "unions"],
    }
    # The hostile values go with the real ones too: a bound parameter draws from its own only.
    dictionaries = {
        name: [*values, *(HOSTILE_INTEGERS if isinstance(values[0], int) else HOSTILE_STRINGS)]
        for name, values in real.items()
    }
    dictionaries |= {"hostile_strings": HOSTILE_STRINGS, "hostile_integers": HOSTILE_INTEGERS}
    bindings = {
        "path.incident_id": "incidents",
        "body.incident_id": "incidents",
        "query.incident_id": "incidents",
        "path.sitrep_id": "sitreps",
        "path.update_id": "updates",
        "path.message_id": "messages",
        "path.code": "codes",
        "body.unit": "units",
        "query.unit": "units",
        "body.type": "incident_types",
        "body.groups[*]": "groups",
    }
    lines = []
    for name, values in dictionaries.items():
        lines += [f"[dictionaries.{name}]", f"values = {_toml(values)}", ""]
    lines.append("[generation.dictionaries]")
    lines.append('string = { dictionary = "hostile_strings", probability = 0.05 }')
    lines.append('integer = { dictionary = "hostile_integers", probability = 0.05 }')
    lines += ["", "[parameters]"]
    for key, name in bindings.items():
        lines.append(f'"{key}" = {{ dictionary = "{name}", probability = 0.5 }}')
    if not events_coverage:
        lines += ["", "[[operations]]", 'include-path = "/api/v1/events"']
        lines.append("phases.coverage.enabled = false")
    return "\n".join(lines) + "\n"


# --- the run ----------------------------------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[BoardServer]:
    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as broker:
        running = start_board_server(
            tmp_path, database_url, USERS, CRISIS_KAFKA_BOOTSTRAP=broker.bootstrap
        )
        try:
            yield running
        finally:
            running.stop()


def schemathesis_run(
    server: BoardServer, workdir: Path, *, user: str, phases: str
) -> tuple[int, str, float]:
    """``schemathesis run`` as a subprocess: exit code, its output and seconds taken."""
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "--config-file",
            str(workdir / "schemathesis.toml"),
            "run",
            str(workdir / "openapi.json"),
            "--url",
            server.base,
            "--header",
            f"Authorization: Bearer {server.tokens[user]}",
            "--checks",
            "not_a_server_error",
            "--phases",
            phases,
            "--seed",
            str(SEED),
            "--max-examples",
            str(EXAMPLES),
            "--workers",
            "1",
            "--request-timeout",
            "30",
            "--suppress-health-check",
            "all",
            "--no-color",
        ],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=3600,
        env={**os.environ, "COLUMNS": "120"},
    )
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - started


@pytest.mark.fuzz
@pytest.mark.broker
@pytest.mark.slow
def test_no_operation_answers_a_server_error(
    server: BoardServer, tmp_path: Path, database_url: str
) -> None:
    """Every operation as an admin (all phases) and, on SQLite, as a unit's operator
    (generated cases only): zero 5xx over the whole run."""
    seeded = _seed(server)
    schema = server.api("GET", "/openapi.json", "admin")
    assert schema.status_code == 200, schema.text
    openapi = schema.json()
    units = [u["id"] for u in server.api("GET", "/api/v1/units", "admin").json()]
    (tmp_path / "openapi.json").write_text(json.dumps(fuzz_schema(openapi)))
    (tmp_path / "schemathesis.toml").write_text(fuzz_config(seeded, units))
    passes = [("admin", "examples,coverage,fuzzing,stateful")]
    if database_url.startswith("sqlite"):
        passes.append(("op", "fuzzing,stateful"))
    for user, phases in passes:
        code, output, seconds = schemathesis_run(server, tmp_path, user=user, phases=phases)
        print(f"schemathesis as {user}: exit {code} in {seconds:.1f} s\n{output[-3000:]}")
        assert code == 0, (
            f"schemathesis as {user} found failures (seed {SEED}, {EXAMPLES} examples;"
            f" each failure below has a curl command to reproduce it):\n{output[-20000:]}"
            f"\n--- server log ---\n{server.output()}"
        )
    # The server lived through it and still answers.
    assert server.api("GET", "/healthz", "admin").status_code == 200


# --- the 5xx it found, one regression test each (through the API, SQLite and PostgreSQL) -----


async def _stored(api: ApiHarness) -> tuple[int, int]:
    async with api.app.state.sessions() as session:
        entries = (await session.exec(select(func.count()).select_from(LogEntry))).one()
        incidents = (await session.exec(select(func.count()).select_from(Incident))).one()
    return int(entries), int(incidents)


async def test_a_nul_character_is_refused_before_anything_is_stored(api: ApiHarness) -> None:
    """PostgreSQL's text holds no U+0000: each of these answered 500 there (and stored it on
    SQLite). Now 422 naming it on both, in a path, a query, a JSON body or a form."""
    op = await api.user("op", "operator", unit=UNIT)
    admin = await api.user("adm", "admin")
    opened = {"type": "fire", "title": "Brann", "unit": UNIT, "severity": 3}
    incident = (await api.client.post("/api/v1/incidents", json=opened, headers=op)).json()["id"]
    sitrep = (await api.client.post(f"/api/v1/incidents/{incident}/sitreps", headers=op)).json()
    before = await _stored(api)
    soon = (datetime.now(UTC) + timedelta(minutes=30)).isoformat()
    facts = {"title": "Brann\x00", "known": "Røyk.", "actions": "Evakuert."}
    update = {"incident_id": incident, "groups": ["staff"], "facts": facts, "next_update_at": soon}
    entries = f"/api/v1/incidents/{incident}/entries"
    refused = [
        ("POST", "/api/v1/incidents", op, {"json": {**opened, "title": "Br\x00ann"}}),
        ("POST", entries, op, {"json": {"kind": "observation", "text": "\x00"}}),
        ("POST", entries, op, {"json": {"kind": "observation", "k\x00": 1}}),
        ("POST", f"/api/v1/sitreps/{sitrep['id']}/versions", op, {"json": {"situation": "a\x00"}}),
        ("POST", "/api/v1/notifications/updates", op, {"json": update}),
        ("GET", "/api/v1/incidents/a%00b", op, {}),
        ("GET", "/api/v1/notifications/ack/a%00b", {}, {}),
        ("GET", "/api/v1/incidents?unit=a%00", op, {}),
        ("GET", "/api/v1/events/dlq?unit=a%00", admin, {}),
        ("GET", "/api/v1/audit/access?actor=a%00", admin, {}),
        ("POST", "/login", {}, {"data": {"username": "op\x00", "password": "correct horse"}}),
    ]
    for method, path, headers, body in refused:
        r = await api.client.request(method, path, headers=headers, **body)
        assert r.status_code == 422, (method, path, r.status_code, r.text)
        assert [e["message"] for e in r.json()["errors"]] == [jsonlimits.NUL_MESSAGE], r.text
    assert await _stored(api) == before
    timeline = await api.client.get(f"/api/v1/incidents/{incident}/timeline", headers=op)
    assert timeline.status_code == 200 and len(timeline.json()) == before[0]
    # An escaped backslash before "u0000" is no NUL: kept as written.
    r = await api.client.post(
        entries,
        content='{"kind": "observation", "text": "C:\\\\u0000"}',
        headers={**op, "content-type": "application/json"},
    )
    assert r.status_code == 201 and r.json()["text"] == "C:\\u0000", r.text


@pytest.mark.broker
async def test_a_nul_character_on_ingest_is_refused_and_nothing_sent(tmp_path: Path) -> None:
    """Events and reports carry text into incidents the worker writes: refused at the door."""
    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as broker:
        async with ingest_api(ingest_settings(tmp_path, broker.bootstrap)) as api:
            op = await api.user("op", "operator", unit=UNIT)
            for path, body in (
                ("/api/v1/events", {"json": event(1, data={"area": "A\x00", "staff_id": "s1"})}),
                ("/api/v1/reports", {"json": {"category": "brann", "what": "R\x00yk"}}),
                ("/api/v1/reports", {"data": {"category": "brann", "what": "R\x00yk"}}),
            ):
                r = await api.client.post(path, headers=op, **body)
                assert r.status_code == 422, (path, r.text)
                assert jsonlimits.NUL_MESSAGE in r.text
            marker = event(2)
            r = await api.client.post("/api/v1/events", json=marker, headers=op)
            assert r.status_code == 202, r.text
            got = await read_topic(broker.bootstrap, topics.EVENTS, count=2, within=5.0)
            assert [v["id"] for _, v in got] == [marker["id"]]
