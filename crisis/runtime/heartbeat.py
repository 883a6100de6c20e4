"""Heartbeats: each long-running part says it is alive in a small file of the run directory.

``crisis up`` runs every part on one machine, so a file per part (``<run dir>/<part>.beat``,
rewritten atomically every second) is enough for ``/healthz`` to tell a stuck or dead worker
from a live one; ``up.json`` there says which parts the process tree runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: Seconds after which a part whose heartbeat did not move counts as not running.
STALE_AFTER = 10.0
TREE_FILE = "up.json"
DRAINING_FILE = "draining"
#: Written at every start of the embedded broker: which (empty) broker is the current one.
BROKER_FILE = "broker.json"


def write_json(path: Path, value: Mapping[str, Any]) -> None:
    """Replace ``path`` atomically (a reader sees the old or the new content, never half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, separators=(",", ":")))
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def beat(run_dir: Path, part: str) -> None:
    write_json(run_dir / f"{part}.beat", {"pid": os.getpid(), "at": time.time()})


def age(run_dir: Path, part: str, *, now: float | None = None) -> float | None:
    """Seconds since ``part`` last beat, or None if it never did."""
    value = read_json(run_dir / f"{part}.beat")
    if value is None or not isinstance(value.get("at"), int | float):
        return None
    return max(0.0, (now or time.time()) - float(value["at"]))


async def beat_forever(
    run_dir: Path,
    part: str,
    *,
    interval: float = 1.0,
) -> None:
    """Beat every ``interval`` seconds until cancelled; a full disk only skips a beat."""
    while True:
        with contextlib.suppress(OSError):
            await asyncio.to_thread(beat, run_dir, part)
        await asyncio.sleep(interval)


def pid_alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def tree(run_dir: Path) -> dict[str, Any] | None:
    """The running process tree's state (``crisis up``), or None when no live tree wrote it."""
    value = read_json(run_dir / TREE_FILE)
    if value is None or not pid_alive(value.get("supervisor")):
        return None
    return value


def draining(run_dir: Path) -> bool:
    """The tree is stopping: the file exists and names a live supervisor (or no one)."""
    try:
        text = (run_dir / DRAINING_FILE).read_text().strip()
    except OSError:
        return False
    return not text.isdigit() or pid_alive(int(text))
