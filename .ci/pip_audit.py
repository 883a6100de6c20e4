"""pip-audit over the installed dependencies, judged with the written exceptions.

    python .ci/pip_audit.py [--ignore-file FILE] [--report FILE]

Runs ``pip-audit --skip-editable`` on the environment of the Python that runs this script
(``make audit`` uses .venv's) and exits 1 on a known vulnerability that
``.ci/pip-audit-ignore.txt`` does not name. Every line there is ``<id> <reason>``; an id without
a reason is refused (exit 2). Where the vulnerability service cannot be reached, or knows none
of the installed packages (a mirror without PyPI's per-version data), the audit says so and is
skipped (exit 0): nothing was checked, which is not the same as nothing found.
``--report`` judges a report pip-audit already wrote (its ``--format json``) instead of running it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

IGNORE_FILE = Path(__file__).with_name("pip-audit-ignore.txt")
#: What a failed connection looks like in pip-audit's error output (its own message for a
#: timeout, requests' exception names for a refused connection, a proxy or DNS).
UNREACHABLE = (
    "Could not connect",
    "ConnectionError",
    "ProxyError",
    "NameResolutionError",
    "Max retries exceeded",
    "network may be blocking",
)


class IgnoreFileError(ValueError):
    pass


def read_ignores(path: Path) -> dict[str, str]:
    """``{vulnerability id: reason}`` from the exceptions file (``#`` starts a comment)."""
    ignores: dict[str, str] = {}
    if not path.exists():
        return ignores
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        vuln_id, _, reason = line.partition(" ")
        if not reason.strip():
            raise IgnoreFileError(f"{path}:{number}: {vuln_id} has no reason; write why")
        ignores[vuln_id] = reason.strip()
    return ignores


def judge(report: dict[str, Any], ignores: dict[str, str]) -> tuple[int, list[str]]:
    """The exit code and what to print for a pip-audit JSON report."""
    dependencies = report.get("dependencies", [])
    audited = [d for d in dependencies if "skip_reason" not in d]
    skipped = [d for d in dependencies if "skip_reason" in d]
    if dependencies and not audited:
        return 0, [
            f"pip-audit: SKIPPED — the vulnerability service knew none of the {len(skipped)}"
            f" installed packages (e.g. {skipped[0]['skip_reason']}); nothing was audited"
        ]
    lines: list[str] = []
    found = 0
    for dep in audited:
        for vuln in dep.get("vulns", []):
            ids = [vuln["id"], *vuln.get("aliases", [])]
            known = next((i for i in ids if i in ignores), None)
            where = f"{dep['name']} {dep['version']}: {', '.join(ids)}"
            if known is not None:
                lines.append(f"pip-audit: ignored {where} — {ignores[known]}")
                continue
            found += 1
            fixed = ", ".join(vuln.get("fix_versions", [])) or "no fixed version yet"
            lines.append(f"pip-audit: VULNERABLE {where} (fixed in: {fixed})")
    for dep in skipped:
        lines.append(f"pip-audit: not audited: {dep['skip_reason']}")
    verdict = (
        f"pip-audit: {found} known vulnerabilit{'y' if found == 1 else 'ies'} in {len(audited)}"
        f" audited packages; upgrade, or add the id and the reason to {IGNORE_FILE.name}"
        if found
        else f"pip-audit: no known vulnerability in {len(audited)} audited packages"
    )
    return (1 if found else 0), [*lines, verdict]


def run_pip_audit(output: Path) -> tuple[int, str]:
    """pip-audit on this interpreter's environment, its JSON report written to ``output``."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip_audit",
            "--skip-editable",
            "--progress-spinner",
            "off",
            "--format",
            "json",
            "--output",
            str(output),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    return proc.returncode, proc.stdout + proc.stderr


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ignore-file", type=Path, default=IGNORE_FILE)
    parser.add_argument("--report", type=Path, help="judge this pip-audit JSON report")
    args = parser.parse_args(argv)
    try:
        ignores = read_ignores(args.ignore_file)
    except IgnoreFileError as exc:
        print(f"pip-audit: {exc}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        report_path = args.report or Path(tmp) / "pip-audit.json"
        if args.report is None:
            code, output = run_pip_audit(report_path)
            written = report_path.exists() and report_path.stat().st_size > 0
            if not written:
                if any(marker in output for marker in UNREACHABLE):
                    last = output.strip().splitlines()[-1] if output.strip() else ""
                    print(
                        "pip-audit: SKIPPED — the vulnerability service cannot be reached"
                        f" ({last}); nothing was audited"
                    )
                    return 0
                print(output, file=sys.stderr)
                print(f"pip-audit: failed (exit {code}) without a report", file=sys.stderr)
                return code or 1
        report = json.loads(report_path.read_text(encoding="utf-8"))
    code, lines = judge(report, ignores)
    print("\n".join(lines))
    return code


if __name__ == "__main__":
    sys.exit(main())
