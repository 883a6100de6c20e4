"""``python -m streams worker``: the stream worker (what ``crisis worker`` runs)."""

from __future__ import annotations

import sys

from streams.worker import run_worker


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] != ["worker"]:
        print("usage: python -m streams worker", file=sys.stderr)
        return 2
    return run_worker()


if __name__ == "__main__":
    sys.exit(main())
