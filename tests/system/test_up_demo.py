"""``crisis up --demo``: the whole tree starts, then the two-minute demo exercise runs; with
the shipped recipients file its participants receive in the local inbox, everyone else is
blocked and logged, and nothing leaves the machine."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from crisis.kafka.broker import free_port

DEADLINE = 90.0


def _get(base: str, token: str, path: str) -> Any:
    request = urllib.request.Request(  # noqa: S310 (loopback)
        base + path, headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.loads(response.read())


def _inbox(db: Path, exercise_id: str) -> list[tuple[str, str]]:
    """(recipient, address) of what the local inbox holds of the exercise."""
    with sqlite3.connect(db, timeout=10) as conn:
        return list(
            conn.execute(
                "select recipient, address from notify_inbox where exercise = ?", (exercise_id,)
            )
        )


def _statuses(db: Path, exercise_id: str) -> tuple[list[str], list[str]]:
    """The outbox messages' and the delivery attempts' states of the exercise's incidents."""
    with sqlite3.connect(db, timeout=10) as conn:
        messages = [
            r[0]
            for r in conn.execute(
                "select m.status from notify_outbox m join incidents i on i.id = m.incident_id"
                " where i.exercise = ?",
                (exercise_id,),
            )
        ]
        attempts = [r[0] for r in conn.execute("select status from notify_attempts")]
    return messages, attempts


@pytest.mark.broker
@pytest.mark.slow
def test_crisis_up_demo_delivers_to_the_local_inbox_only(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRISIS_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "crisis.cli",
            "up",
            "--demo",
            "--port",
            str(port),
            "--data-dir",
            str(data),
        ],
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
            if line.startswith("Øvingsleder / controller:"):
                break
        joined = "".join(output)
        found = re.search(r"/exercises/(ovelse-demo-[0-9-]+)", joined)
        assert found, joined[-3000:]
        exercise_id = found.group(1)
        assert f"Situasjonsbilde / board: http://127.0.0.1:{port}/" in joined
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

        listed = {e["id"]: e for e in _get(base, token, "/api/v1/exercises")}
        assert listed[exercise_id]["scenario_id"] == "demo-kort"
        assert listed[exercise_id]["state"] == "running"

        deadline = time.monotonic() + DEADLINE
        incidents: list[dict[str, Any]] = []
        messages: list[str] = []
        while time.monotonic() < deadline:
            incidents = _get(base, token, f"/api/v1/incidents?exercise={exercise_id}")
            messages, attempts = _statuses(data / "crisis.db", exercise_id)
            if incidents and "blocked" in messages and "sent" in messages:
                break
            time.sleep(0.5)
        exercise = _get(base, token, f"/api/v1/exercises/{exercise_id}")
        participants = {p["person_id"] for p in exercise["participants"]}
        assert participants, "the shipped file's participants are kept: they receive in /inbox"
        assert exercise["progress"]["injects"]["sent"] >= 1
        assert incidents, "an inject opens an exercise incident"
        assert all(i["exercise"] == exercise_id for i in incidents)
        assert "blocked" in messages, messages
        messages, attempts = _statuses(data / "crisis.db", exercise_id)
        assert "failed" not in messages and set(attempts) <= {"blocked", "sent"}, attempts
        # every delivery is in the local inbox, to a participant: nothing left the machine
        inbox = _inbox(data / "crisis.db", exercise_id)
        delivered = [s for s in messages if s in ("sent", "acknowledged")]
        assert delivered and len(inbox) == len(delivered), (messages, inbox)
        assert {who for who, _ in inbox} <= participants
        assert all(address.startswith("inbox://") for _, address in inbox), inbox

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=45) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_with_a_real_recipients_file_the_demo_registers_nobody(tmp_path: Path) -> None:
    from crisis.cli import demo_keeps_participants
    from crisis.settings import Settings

    shipped = Settings(data_dir=tmp_path, secret_key="x")
    real = Settings(data_dir=tmp_path, secret_key="x", notify_config=tmp_path / "notify.yaml")
    assert demo_keeps_participants(shipped) and not demo_keeps_participants(real)
