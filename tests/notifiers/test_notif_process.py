"""``python -m notifiers`` is its own process: it starts, reports its targets, stops on SIGTERM."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path


def test_the_dispatcher_process_starts_and_stops_cleanly(tmp_path: Path) -> None:
    env = dict(os.environ, CRISIS_DATA_DIR=str(tmp_path / "var"))
    env.pop("CRISIS_NOTIFY_CONFIG", None)
    env.pop("CRISIS_DATABASE_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "notifiers"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        line = ""
        while time.monotonic() < deadline:
            ready, _, _ = select.select(
                [proc.stdout], [], [], max(0.0, deadline - time.monotonic())
            )
            if not ready:
                break
            line = proc.stdout.readline()
            if "running" in line or not line:
                break
        assert "dispatcher 0/1 running" in line, line
        assert "targets" in line
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_a_broken_recipients_file_stops_the_process_with_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "notify.yaml"
    bad.write_text("version: 1\npeople:\n  - id: a\n    name: A\n    contacts: []\n")
    env = dict(os.environ, CRISIS_DATA_DIR=str(tmp_path / "var"), CRISIS_NOTIFY_CONFIG=str(bad))
    env.pop("CRISIS_DATABASE_URL", None)
    out = subprocess.run(
        [sys.executable, "-m", "notifiers"], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2
    assert f"{bad}:5: people[0].contacts:" in out.stderr
