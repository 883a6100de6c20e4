"""``crisis up`` (what ``make run`` runs): healthy within 60 s, clean stop on SIGINT."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from crisis.kafka.broker import free_port, kafka_api_versions_ok
from tests.faults import descendants


@pytest.mark.broker
@pytest.mark.slow
def test_crisis_up_serves_healthz_and_stops_cleanly_on_sigint(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRISIS_")}
    # The bridges start from settings and are told the broker's address (issue 20).
    topic = f"t-{uuid.uuid4().hex[:8]}/kriminalomsorgen/+/+/+"
    env["CRISIS_MQTT_URL"] = f"mqtt://127.0.0.1:1883/{topic}"
    env["CRISIS_MEDIA_FEEDS"] = f"http://127.0.0.1:{port}/no-such-feed.xml"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "crisis.cli",
            "up",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path / "var"),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    try:
        start = time.monotonic()
        assert proc.stdout is not None
        while time.monotonic() - start < 60:
            line = proc.stdout.readline()
            if not line:
                break
            output.append(line)
            if line.startswith("Innlogging / login:"):
                break
        joined = "".join(output)
        assert "Innlogging / login: admin / " in joined, joined[-3000:]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            assert r.status == 200
        broker = re.search(r"on 127\.0\.0\.1:(\d+)", joined)
        assert broker, joined
        broker_port = int(broker.group(1))
        assert kafka_api_versions_ok("127.0.0.1", broker_port)
        tree = descendants(proc.pid)
        assert len(tree) >= 3, "broker, worker and web run as children"
        data = tmp_path / "var"
        assert (data / "broker.addr").read_text().strip() == f"127.0.0.1:{broker_port}"
        assert f"CRISIS_KAFKA_BOOTSTRAP=127.0.0.1:{broker_port}" in joined
        state = json.loads((data / "run" / "up.json").read_text())
        for bridge in ("bridge-mqtt", "bridge-media"):
            assert state["parts"][bridge]["state"] == "running", state
        if _mqtt_answers():  # the supervised bridge subscribed: it has its broker and topic
            deadline = time.monotonic() + 15
            log = data / "logs" / "bridge-mqtt.log"
            while time.monotonic() < deadline and f"subscribed to {topic}" not in _text(log):
                time.sleep(0.2)
            assert f"subscribed to {topic}" in _text(log), _text(log)[-2000:]
            assert (data / "outbox-bridge-mqtt.db").exists()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert not (data / "broker.addr").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    leftover = [pid for pid in tree if Path(f"/proc/{pid}").exists()]
    assert leftover == [], f"processes left behind: {leftover}"
    assert not kafka_api_versions_ok("127.0.0.1", broker_port)


def _mqtt_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 1883), timeout=1):
            return True
    except OSError:
        return False


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


BAD_ORGANISATION = """\
ministry: {id: jd, name: Justis- og beredskapsdepartementet, roles: {leader: [{name: A}]}}
directorate: {id: kdi, name: Kriminalomsorgsdirektoratet, roles: {leader: [{name: B}]}}
regions:
  - {id: sor, name: Region sør, roles: {leader: [{name: C}]}}
units:
  - id: ringerike
    name: Ringerike fengsel
    kind: prison
    security_level: high
    region: midt
    lat: 60.17
    lon: 10.25
    roles: {leader: [{name: D}]}
    cooperating_actors: [{kind: police, name: Sør-Øst politidistrikt}]
"""


def test_crisis_up_refuses_an_organisation_with_an_unknown_region(tmp_path: Path) -> None:
    org = tmp_path / "org.yaml"
    org.write_text(BAD_ORGANISATION)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRISIS_")}
    env["CRISIS_ORGANISATION"] = str(org)
    result = subprocess.run(
        [sys.executable, "-m", "crisis.cli", "up", "--data-dir", str(tmp_path / "var")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "org.yaml:10: units[0].region: unknown region 'midt'" in result.stderr
    assert not (tmp_path / "var").exists(), "nothing is started or written"


def test_web_app_refuses_it_too(tmp_path: Path) -> None:
    from crisis.domain.organisation import OrganisationError
    from crisis.settings import Settings
    from web.app import create_app

    org = tmp_path / "org.yaml"
    org.write_text(BAD_ORGANISATION)
    with pytest.raises(OrganisationError) as info:
        create_app(Settings(data_dir=tmp_path, organisation=org, secret_key="x"))
    assert (info.value.line, info.value.field) == (10, "units[0].region")
