"""``python -m streams worker [--role all|ingest|reactions]``: the stream worker (what
``crisis worker`` runs)."""

from __future__ import annotations

import argparse
import sys

from crisis.settings import WORKER_ROLE_HELP, WORKER_ROLES
from streams.worker import run_worker


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streams")
    sub = parser.add_subparsers(dest="command", required=True)
    p_worker = sub.add_parser("worker", help="the stream worker")
    p_worker.add_argument("--role", choices=WORKER_ROLES, default="all", help=WORKER_ROLE_HELP)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    return run_worker(args.role)


if __name__ == "__main__":
    sys.exit(main())
