"""Run every ``bench/bench_*.py`` module's ``main()`` in turn (or those named on argv).

Each benchmark prints a table and writes its JSON next to the data dir; this runner only
sequences them so one ``make bench`` gives all the figures of one machine in one run.
"""

from __future__ import annotations

import importlib
import pkgutil
import platform
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    names = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    if argv:
        names = [n for n in names if any(a in n for a in argv)]
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    print(f"machine: {platform.node()} · {cpu} · python {platform.python_version()}")
    failures = 0
    for name in names:
        print(f"\n== {name}")
        module = importlib.import_module(f"bench.{name}")
        failures += int(bool(module.main()))
    if not names:
        print("no benchmarks found")
    return failures


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
