"""docker-compose cannot start here (no Docker engine); check what can be checked statically."""

from __future__ import annotations

from pathlib import Path

import yaml

from crisis.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def test_every_crisis_variable_in_compose_is_a_known_setting() -> None:
    known = {f"CRISIS_{name.upper()}" for name in Settings.model_fields}
    used = {
        key
        for service in _compose()["services"].values()
        for key in (service.get("environment") or {})
        if key.startswith("CRISIS_")
    }
    assert used, "the app services must be configured through CRISIS_ variables"
    assert used <= known, f"unknown settings in docker-compose.yml: {sorted(used - known)}"


def test_compose_has_the_production_shape() -> None:
    services = _compose()["services"]
    assert {"kafka", "postgres", "worker", "reactions", "notifier", "web"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka")
    assert "healthcheck" in services["postgres"]
    assert services["worker"]["environment"]["CRISIS_DATABASE_URL"].startswith("postgresql")
    for app in ("worker", "reactions", "notifier", "web"):
        assert services[app]["depends_on"]["postgres"]["condition"] == "service_healthy"
    roles = {services[app]["command"][-1] for app in ("worker", "reactions")}
    assert roles == {"ingest", "reactions"}, "every worker role runs somewhere"


def test_settings_read_the_compose_values(monkeypatch: object) -> None:
    import pytest

    mp = pytest.MonkeyPatch()
    try:
        for key, value in _compose()["services"]["web"]["environment"].items():
            mp.setenv(key, str(value))
        settings = Settings()
    finally:
        mp.undo()
    assert settings.kafka_bootstrap == "kafka:9092"
    assert settings.effective_database_url.startswith("postgresql+asyncpg://crisis:")
    assert settings.events_partitions == 6
