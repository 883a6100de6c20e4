"""Configuration from the environment (prefix ``CRISIS_``); nothing is read at import time."""

from __future__ import annotations

import json
import secrets
from functools import cached_property
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

#: What a stream worker process runs (``crisis worker --role``): ``ingest`` (crisis.events →
#: the crisis log → crisis.log), ``reactions`` (crisis.log → playbooks and notification
#: plans), or ``all`` of it. ``crisis up`` runs ``ingest`` and ``reactions``.
WORKER_ROLES = ("all", "ingest", "reactions")
WORKER_ROLE_HELP = "ingest: events → log; reactions: log → playbooks, notifications; all: both"


class Settings(BaseSettings):
    """Every knob the processes share; operators set them as ``CRISIS_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="CRISIS_", extra="ignore")

    data_dir: Path = Field(default=Path("var"), description="SQLite file, outbox, secrets, logs.")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy async URL; unset → SQLite in the data dir."
    )
    kafka_bootstrap: str | None = Field(
        default=None, description="host:port of a real Kafka; unset → the embedded broker."
    )
    outbox_until_logged: bool = Field(
        default=False,
        description="Keep each accepted event in the local outbox until the crisis log holds it;"
        " `crisis up` sets it for the embedded broker, which keeps nothing on disk.",
    )
    run_dir: Path | None = Field(
        default=None, description="Heartbeats and the process tree's state; unset → data dir/run."
    )
    organisation: Path | None = Field(default=None, description="Organisation YAML; unset → demo.")
    notify_config: Path | None = Field(default=None, description="Recipients/channels YAML.")
    sms_inbound_auth_token: str | None = Field(
        default=None, description="Twilio auth token: inbound SMS must be signed; unset → not."
    )
    playbooks: Path | None = Field(
        default=None, description="Directory of playbook YAML files; unset → the shipped library."
    )
    playbook_tick_seconds: float = Field(
        default=30.0, gt=0, description="How often open incidents' time criteria are re-evaluated."
    )
    secret_key: str | None = Field(
        default=None, description="Session signing key; unset → kept in data dir."
    )
    events_partitions: int = Field(default=4, ge=1)
    log_partitions: int = Field(default=1, ge=1)
    notifications_partitions: int = Field(default=1, ge=1)
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=8000, ge=0, le=65535)
    timezone: str = "Europe/Oslo"
    api_max_body_bytes: int = Field(
        default=256 * 1024,
        ge=1024,
        description="Request body cap of every write but ingest's (which has its own); past it"
        " the API answers 413 and keeps nothing.",
    )
    # --- login, sessions, tokens (web/auth.py, crisis/accounts/service.py) ---
    login_concurrency: int = Field(
        default=2,
        ge=1,
        description="Password checks (argon2) one web process runs at once, in threads off the"
        " event loop.",
    )
    login_max_pending: int = Field(
        default=16,
        ge=1,
        description="Logins one web process checks or holds waiting for a check; past it a login"
        " is answered 503 with Retry-After at once.",
    )
    login_max_failures: int = Field(
        default=5,
        ge=1,
        description="Failed logins of one account name before it must wait (429, Retry-After).",
    )
    login_address_max_failures: int = Field(
        default=50,
        ge=1,
        description="Failed logins from one client address (any account) before it must wait.",
    )
    login_backoff_seconds: float = Field(
        default=5.0, gt=0, description="The first wait; it doubles with each further failure."
    )
    login_backoff_max_seconds: float = Field(
        default=900.0, gt=0, description="The longest wait after failed logins."
    )
    login_failure_window_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="Failures are forgotten after this long without one (counted from the end of"
        " the last wait).",
    )
    session_max_age_seconds: int = Field(
        default=12 * 3600,
        ge=60,
        description="A browser session ends after this long without a request (and at logout, a"
        " password change or `crisis user disable`).",
    )
    cookie_secure: bool = Field(
        default=False,
        description="Send the session cookie only over HTTPS (Secure); set it when served over"
        " HTTPS.",
    )
    board_recheck_seconds: float = Field(
        default=30.0,
        gt=0,
        description="How often an open board websocket checks that its session or token is"
        " still live; a logout, revoked token or disabled user closes it (4401).",
    )
    token_expires_days: int = Field(
        default=365,
        ge=0,
        description="Lifetime of a token from `crisis token create` without --expires-days;"
        " 0: no expiry.",
    )
    # --- ingest (POST /api/v1/events, /cap, /reports) ---
    ingest_max_body_bytes: int = Field(default=1_048_576, ge=1024, description="Request body cap.")
    ingest_max_events: int = Field(default=1000, ge=1, description="Events per request.")
    ingest_rate_per_source: float = Field(
        default=50.0, gt=0, description="Sustained events/s per CloudEvents source."
    )
    ingest_burst_per_source: int = Field(default=200, ge=1, description="Token-bucket size.")
    ingest_send_timeout: float = Field(
        default=5.0, gt=0, description="Seconds Kafka gets to ack before the outbox takes over."
    )
    ingest_min_free_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=0,
        description="Free bytes the data directory (the outbox) must have for ingest to accept"
        " events; below it the API answers 507. 0 disables the check.",
    )
    # --- CAP warnings (POST /api/v1/cap); parsed off the event loop within these limits ---
    cap_max_body_bytes: int = Field(
        default=1_048_576, ge=1024, description="Body cap of a CAP alert; past it 413."
    )
    cap_max_infos: int = Field(default=10, ge=1, description="<info> blocks per alert (422).")
    cap_max_areas: int = Field(default=100, ge=1, description="<area> elements per alert (422).")
    cap_max_shapes: int = Field(
        default=1000, ge=1, description="<polygon> and <circle> elements per alert (422)."
    )
    cap_max_polygon_points: int = Field(
        default=5000, ge=4, description="Points of one <polygon> (422)."
    )
    # --- stream worker (streams/) ---
    # Prometheus ports, one default per role (docs/metrics.md); 0 → off.
    worker_metrics_port: int = Field(
        default=9101, ge=0, le=65535, description="Metrics port of an ingest (or all) worker."
    )
    reactions_metrics_port: int = Field(
        default=9102, ge=0, le=65535, description="Metrics port of a reactions worker."
    )
    dispatcher_metrics_port: int = Field(
        default=9103, ge=0, le=65535, description="Metrics port of the dispatcher."
    )
    worker_metrics_host: str = Field(
        default="127.0.0.1",
        description="Address the worker and dispatcher metrics ports listen on;"
        " 0.0.0.0 in a container.",
    )
    worker_batch_size: int = Field(
        default=1000, ge=1, description="Most events per DB transaction."
    )
    reaction_min_interval: float = Field(
        default=1.0,
        ge=0,
        description="Seconds between two playbook re-evaluations of one incident for more source"
        " events; its first entry and any other kind of entry are reacted to at once.",
    )
    reactions_nice: int = Field(
        default=0,
        ge=0,
        le=19,
        description="Nice value the reactions process (role reactions) gives itself; 0 leaves it."
        " Not the default: a niced reactions process holds SQLite's writer longer while others"
        " have the CPU, and the ingest waits for it (docs/performance.md).",
    )
    reaction_max_interval: float = Field(
        default=5.0,
        ge=0,
        description="Upper bound of that interval while re-evaluations find nothing to do.",
    )
    correlation_window_seconds: float = Field(default=600.0, gt=0)
    storm_window_seconds: float = Field(default=60.0, gt=0)
    storm_max_events: int = Field(default=20, ge=1)
    heartbeat_factor: float = Field(default=3.0, gt=0)
    media_window_seconds: float = Field(default=1800.0, gt=0)
    media_threshold: int = Field(default=5, ge=1)
    media_key_weight: int = Field(
        default=2,
        ge=1,
        description="A negative article in a key outlet (key_media) counts this many times.",
    )
    media_feed_max_bytes: int = Field(
        default=4 * 1_048_576,
        ge=1024,
        description="Media bridge: a feed body past it is not parsed (logged, the feed skipped).",
    )
    media_feed_max_items: int = Field(
        default=500,
        ge=1,
        description="Media bridge: items read per feed and poll; the rest are logged.",
    )
    # --- bridges and the broker's limits (docs/operations.md, issue 20) ---
    mqtt_url: str | None = Field(
        default=None,
        description="MQTT bridge: mqtt://[user:pass@]HOST:PORT[/topic-filter] (mqtts:// for TLS);"
        " `crisis up` starts the bridge when set. The filter defaults to kriminalomsorgen/+/+/+.",
    )
    media_feeds: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Media bridge: feed URLs (comma- or space-separated); `crisis up` starts the"
        " bridge when set.",
    )
    kafka_max_request_size: int = Field(
        default=1_048_576,
        ge=1024,
        description="Bytes a record may have; a larger one is dead-lettered in reduced form.",
    )
    map_tile_url: str | None = Field(
        default=None,
        description="Board map tiles, e.g. https://host/{z}/{x}/{y}.png; unset → offline outline.",
    )
    # --- headers, origins, metrics and API docs (docs/security.md) ---
    allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Origins (scheme://host[:port], comma-separated) besides the request's own"
        " Host that may send cookie-authenticated writes: the public address behind a proxy.",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="Bearer token a scraper sends to /metrics; unset → only an admin's login.",
    )
    production: bool = Field(
        default=False,
        description="Production mode: /docs, /redoc and /openapi.json need a login.",
    )

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str | None) -> str | None:
        """Accept plain URLs from operators and pick the async driver ourselves."""
        if value is None or value == "":
            return None
        if value.startswith("postgresql://") or value.startswith("postgres://"):
            return "postgresql+asyncpg://" + value.split("://", 1)[1]
        if value.startswith("sqlite:///"):
            return "sqlite+aiosqlite:///" + value.split(":///", 1)[1]
        return value

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _origins(cls, value: object) -> object:
        """A comma-separated list from the environment; each a bare origin, no path."""
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list):
            return value
        origins = []
        for item in (str(i).strip().rstrip("/").lower() for i in items):
            if not item:
                continue
            scheme, sep, host = item.partition("://")
            if scheme not in ("http", "https") or not sep or not host or "/" in host:
                raise ValueError(f"{item!r} is not an origin (scheme://host[:port])")
            origins.append(item)
        return origins

    @field_validator("media_feeds", mode="before")
    @classmethod
    def _feeds(cls, value: object) -> object:
        """A comma- or space-separated list from the environment (or a JSON list)."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [item for item in text.replace(",", " ").split() if item]
        return value

    @field_validator("mqtt_url")
    @classmethod
    def _blank_url_is_none(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("kafka_bootstrap")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value or None

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'crisis.db').resolve()}"

    @property
    def effective_run_dir(self) -> Path:
        return self.run_dir or self.data_dir / "run"

    @cached_property
    def session_secret(self) -> str:
        """A stable secret so browser sessions survive restarts without configuration."""
        if self.secret_key:
            return self.secret_key
        path = self.data_dir / "secret_key"
        if path.exists():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        value = secrets.token_urlsafe(48)
        path.write_text(value)
        path.chmod(0o600)
        return value
