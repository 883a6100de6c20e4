"""``crisis exercise``: the entry-point seam and ``run --dry-run`` (no server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from crisis.cli import main
from playbooks.exercises.cli import progress_line


def test_the_exercise_command_is_registered_through_the_seam(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["exercise", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for sub in ("run", "participants", "list", "end"):
        assert sub in out


def test_dry_run_prints_the_schedule_at_speed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["exercise", "run", "demo-kort", "--speed", "2", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "duration 02:00 scenario, 01:00 at x2" in out
    assert "   00:20 /    00:10  report melding-royk" in out
    assert "kvittering: staff_acknowledged (within 02:00)" in out


def test_dry_run_of_a_faulty_file_names_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    faulty = tmp_path / "feil.yaml"
    faulty.write_text(
        "version: 1\nid: feil\ntitle: Feil\ntitle_en: Wrong\nunits: [ukjent]\n"
        "injects:\n  - {id: a, at: 0s, type: rykte, text: x}\n",
        encoding="utf-8",
    )
    assert main(["exercise", "run", str(faulty), "--dry-run"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert any(line.startswith(f"{faulty}:5: units[0]:") for line in err), err
    assert any(line.startswith(f"{faulty}:7:") and "rykte" in line for line in err), err


def test_run_without_a_token_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CRISIS_TOKEN", raising=False)
    assert main(["exercise", "run", "demo-kort"]) == 2
    assert "CRISIS_TOKEN" in capsys.readouterr().err


def test_the_progress_line_shows_dashes_until_the_evaluation_counts() -> None:
    line = progress_line(
        {
            "state": "running",
            "progress": {
                "scenario_seconds": 40,
                "duration_seconds": 120,
                "injects": {"sent": 2, "due": 0, "total": 4, "skipped": 0},
                "expected": {"met": None, "missed": None},
            },
        }
    )
    assert line == (
        "[############------------] injects 2/4 (due 0) · expected met –, missed – · "
        "00:40/02:00 · running"
    )
