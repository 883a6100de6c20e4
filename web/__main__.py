"""``python -m web``: serve the web app with uvicorn (what ``crisis web`` runs).

uvicorn's access log (and its websocket lines) name the full path with the query string; a
``?token=`` there is a credential, so the values of secret-bearing parameters are redacted.
"""

from __future__ import annotations

import argparse
import copy
import logging
import re
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from crisis.settings import Settings

#: Query parameters whose values never reach a log.
SECRET_PARAMS = ("token", "access_token", "api_key", "key", "password", "secret", "code")
_SECRET_VALUE = re.compile(
    r"([?&](?:" + "|".join(SECRET_PARAMS) + r")=)[^&\s\"]*", flags=re.IGNORECASE
)


def redact(text: str) -> str:
    """``text`` with the value of every secret query parameter replaced by ``[redacted]``."""
    return _SECRET_VALUE.sub(r"\1[redacted]", text)


class RedactSecrets(logging.Filter):
    """Redacts secret query values in a record's message and arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


def log_config() -> dict[str, Any]:
    """uvicorn's own logging configuration with :class:`RedactSecrets` on both handlers."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_secrets"] = {"()": RedactSecrets}
    for handler in config["handlers"].values():
        handler.setdefault("filters", []).append("redact_secrets")
    return config


def main(argv: list[str] | None = None) -> None:
    settings = Settings()
    parser = argparse.ArgumentParser(prog="crisis web")
    parser.add_argument("--host", default=settings.web_host)
    parser.add_argument("--port", type=int, default=settings.web_port)
    args = parser.parse_args(argv)
    uvicorn.run(
        "web.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        log_level="info",
        log_config=log_config(),
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
