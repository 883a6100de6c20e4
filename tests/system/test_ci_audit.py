"""The dependency audit of CI (issue 15): ``.ci/pip_audit.py``, as ``make audit`` runs it.

A known vulnerability fails it unless ``.ci/pip-audit-ignore.txt`` names it with a reason; an
unreachable service or one that knows none of the packages is said and skipped, never a pass
that looks like an audit. Reports are in pip-audit's own ``--format json`` shape.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / ".ci" / "pip_audit.py"
VULN = {
    "id": "PYSEC-2099-1",
    "fix_versions": ["9.9.1"],
    "aliases": ["CVE-2099-0001", "GHSA-aaaa-bbbb-cccc"],
    "description": "Remote code execution in the example parser.",
}


def _audit(
    tmp_path: Path, *, report: dict[str, Any] | None = None, ignores: str = "", **env: str
) -> subprocess.CompletedProcess[str]:
    ignore_file = tmp_path / "ignore.txt"
    ignore_file.write_text(ignores)
    args = [sys.executable, str(SCRIPT), "--ignore-file", str(ignore_file)]
    if report is not None:
        (tmp_path / "report.json").write_text(json.dumps(report))
        args += ["--report", str(tmp_path / "report.json")]
    return subprocess.run(
        args, capture_output=True, text=True, timeout=300, env={**os.environ, **env}
    )


def _report(*vulns: dict[str, Any]) -> dict[str, Any]:
    return {
        "dependencies": [
            {"name": "examplepkg", "version": "9.9.0", "vulns": list(vulns)},
            {"name": "fine", "version": "1.0", "vulns": []},
            {"name": "private", "skip_reason": "Dependency not found on PyPI: private (0.1)"},
        ],
        "fixes": [],
    }


def test_a_known_vulnerability_fails_naming_package_id_and_fix(tmp_path: Path) -> None:
    result = _audit(tmp_path, report=_report(VULN))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "VULNERABLE examplepkg 9.9.0: PYSEC-2099-1" in result.stdout
    assert "fixed in: 9.9.1" in result.stdout
    assert "1 known vulnerability in 2 audited packages" in result.stdout
    assert "not audited: Dependency not found on PyPI: private" in result.stdout


def test_an_exception_with_its_reason_lets_it_pass_by_id_or_alias(tmp_path: Path) -> None:
    for listed in ("PYSEC-2099-1", "GHSA-aaaa-bbbb-cccc"):
        reason = "the parser is never given untrusted input here"
        result = _audit(tmp_path, report=_report(VULN), ignores=f"# why\n{listed}  {reason}\n")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "ignored examplepkg 9.9.0: PYSEC-2099-1" in result.stdout
        assert reason in result.stdout
        assert "no known vulnerability in 2 audited packages" in result.stdout


def test_an_exception_without_a_reason_is_refused(tmp_path: Path) -> None:
    result = _audit(tmp_path, report=_report(VULN), ignores="PYSEC-2099-1\n")
    assert result.returncode == 2
    assert "PYSEC-2099-1 has no reason" in result.stderr


def test_a_service_that_knows_no_package_is_a_skip_not_a_pass(tmp_path: Path) -> None:
    report = {
        "dependencies": [
            {
                "name": n,
                "skip_reason": f"Dependency not found on PyPI and could not be audited: {n}",
            }
            for n in ("a", "b")
        ],
        "fixes": [],
    }
    result = _audit(tmp_path, report=report)
    assert result.returncode == 0
    assert "SKIPPED" in result.stdout and "knew none of the 2" in result.stdout
    assert "no known vulnerability" not in result.stdout


@pytest.mark.slow
def test_an_unreachable_service_is_said_and_skipped(tmp_path: Path) -> None:
    """The real pip-audit over this environment, its requests sent to a closed port (and an
    empty HTTP cache, so that no answer from an earlier run stands in for the service)."""
    closed = "http://127.0.0.1:9"
    result = _audit(
        tmp_path,
        HTTPS_PROXY=closed,
        https_proxy=closed,
        NO_PROXY="",
        no_proxy="",
        PIP_CACHE_DIR=str(tmp_path / "cache"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SKIPPED — the vulnerability service cannot be reached" in result.stdout
