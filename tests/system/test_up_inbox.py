"""``crisis up`` with the shipped demo recipients: README's breath-alarm curl opens an
incident, and its staff alarm appears in the local inbox (``/inbox``) as delivered."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from crisis.kafka.broker import free_port

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_event() -> dict[str, object]:
    """The event of README's documented curl, as written there."""
    found = re.search(r"-d '(\{\"specversion\".*?\})'", README.read_text(encoding="utf-8"))
    assert found, "README documents a curl posting a breath alarm"
    event: dict[str, object] = json.loads(found.group(1))
    return event


@pytest.mark.broker
@pytest.mark.slow
def test_readme_curl_alarm_is_delivered_to_the_local_inbox(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRISIS_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "crisis.cli", "up", "--port", str(port), "--data-dir", str(data)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    try:
        assert proc.stdout is not None
        start = time.monotonic()
        while time.monotonic() - start < 90:
            line = proc.stdout.readline()
            if not line:
                break
            output.append(line)
            if line.startswith("Innlogging / login:"):
                break
        joined = "".join(output)
        login = re.search(r"Innlogging / login: (\S+) / (\S+)", joined)
        assert login, joined[-3000:]
        token = (
            subprocess.run(
                [sys.executable, "-m", "crisis.cli", "token", "create", "admin"],
                env={**env, "CRISIS_DATA_DIR": str(data)},
                capture_output=True,
                text=True,
                check=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=15) as client:
            r = client.post(
                "/api/v1/events",
                content=json.dumps(readme_event()),
                headers={
                    "Authorization": f"Bearer {token}",
                    "Content-Type": "application/cloudevents+json",
                },
            )
            assert r.status_code == 202, r.text
            r = client.post(
                "/login",
                data={"username": login[1], "password": login[2]},
                headers={"Origin": base},
            )
            assert r.status_code in (200, 303), r.text
            deadline = time.monotonic() + 60
            page = ""
            while time.monotonic() < deadline:
                page = client.get("/inbox").text
                if 'data-recipient="espen-braten"' in page and 'data-status="sent"' in page:
                    break
                time.sleep(0.5)
            assert 'data-recipient="espen-braten"' in page, page[-3000:]
            espen = page.split('data-recipient="espen-braten"', 1)[1].split("</section>", 1)[0]
            assert 'data-status="sent"' in espen and "levert" in espen
            assert "Bekreft: svar" in espen  # the alarm asks its recipient to confirm
            incidents = client.get(
                "/api/v1/incidents", headers={"Authorization": f"Bearer {token}"}
            ).json()
            assert [i["type"] for i in incidents] == ["breath_motion_absent"]
            receipts = client.get(
                f"/api/v1/incidents/{incidents[0]['id']}/timeline",
                headers={"Authorization": f"Bearer {token}"},
            ).json()
            staff = [
                e["data"]
                for e in receipts
                if e["kind"] == "message" and e["data"].get("group") == "staff"
            ]
            assert {d["status"] for d in staff} >= {"queued", "sent"}
            assert "failed" not in {d["status"] for d in staff}
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=45) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
