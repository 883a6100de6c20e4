"""docker-compose.yml, checked without Docker: every file, variable, command and health check.

:func:`compose_problems` reads the compose file as Docker would (YAML anchors and merges
resolved, ``${VAR}`` interpolated from ``deploy/env.example``) and returns what would stop it
from starting or leave a part unconfigured; the tests below show it finds each kind of fault.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from crisis.cli import build_parser
from crisis.settings import Settings
from notifiers.__main__ import build_parser as dispatcher_parser

ROOT = Path(__file__).resolve().parents[2]
ENV_EXAMPLE = ROOT / "deploy" / "env.example"
APP_IMAGE = "crisis:local"
#: The services of the production shape (issue 21): what each must run.
SHAPE = {
    "migrate": ["crisis", "migrate"],
    "ingest-1": ["crisis", "worker", "--role", "ingest"],
    "ingest-2": ["crisis", "worker", "--role", "ingest"],
    "reactions": ["crisis", "worker", "--role", "reactions"],
    "dispatcher": ["python", "-m", "notifiers"],
    "anchor": ["crisis", "log", "anchor", "--every", "5"],
    "web-1": ["crisis", "web", "--host", "0.0.0.0", "--port", "8000"],
    "web-2": ["crisis", "web", "--host", "0.0.0.0", "--port", "8000"],
}
#: Settings that name a file or directory inside the container.
PATH_SETTINGS = ("organisation", "notify_config", "playbooks", "data_dir", "run_dir")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def load_compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in _strings(k) + _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return []


def _interpolate(value: str, env: dict[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        name, op, default = m.group(1), m.group(2), m.group(3)
        if name in env:
            return env[name]
        return default if op in (":-", "-") else ""

    return _VAR.sub(sub, value)


def _mounts(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(kind, source, target) of each volume: kind ``bind`` or ``volume``."""
    mounts = []
    for item in service.get("volumes") or []:
        if isinstance(item, dict):
            kind = item.get("type", "volume")
            mounts.append((kind, str(item.get("source", "")), str(item.get("target", ""))))
            continue
        source, _, rest = str(item).partition(":")
        target = rest.split(":")[0]
        kind = "bind" if source.startswith((".", "/", "~")) else "volume"
        mounts.append((kind, source, target))
    return mounts


def _command_problem(command: Any) -> str | None:
    """Why ``command`` is not one the crisis CLI or the dispatcher accepts (None: it is)."""
    if not isinstance(command, list) or not all(isinstance(a, str) for a in command):
        return f"command must be a list of strings (exec form), not {command!r}"
    if command[:1] == ["crisis"]:
        parser, args = build_parser(), command[1:]
    elif command[:3] == ["python", "-m", "notifiers"]:
        parser, args = dispatcher_parser(), command[3:]
    else:
        return f"{command!r} is neither `crisis …` nor `python -m notifiers`"
    parser.exit = _refuse  # type: ignore[method-assign]
    parser.error = _refuse  # type: ignore[method-assign]
    for sub in _subparsers(parser):
        sub.exit = _refuse  # type: ignore[method-assign]
        sub.error = _refuse  # type: ignore[method-assign]
    try:
        parser.parse_args(args)
    except _Refused as exc:
        return f"{' '.join(command)}: {exc}"
    return None


class _Refused(Exception):
    pass


def _refuse(*args: Any) -> Any:
    raise _Refused(" ".join(str(a) for a in args if a not in (None, 0, 2)).strip())


def _subparsers(parser: Any) -> list[Any]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found += [child, *_subparsers(child)]
    return found


def compose_problems(compose: dict[str, Any], root: Path = ROOT) -> list[str]:
    """Everything in ``compose`` that would stop it starting or leave a part unconfigured."""
    problems: list[str] = []
    env = env_example() if ENV_EXAMPLE.exists() else {}
    for text in _strings(compose):
        for m in _VAR.finditer(text):
            name, op = m.group(1), m.group(2)
            if op not in (":-", "-") and name not in env:
                problems.append(f"${{{name}}} has no default and deploy/env.example lacks it")
    services: dict[str, Any] = compose.get("services") or {}
    declared_volumes = set(compose.get("volumes") or {})
    declared_secrets: dict[str, Any] = compose.get("secrets") or {}
    known = {f"CRISIS_{name.upper()}": name for name in Settings.model_fields}
    one_shot = {name for name, s in services.items() if s.get("restart") == "no"}
    for name, want in SHAPE.items():
        if name not in services:
            problems.append(f"service {name} is missing")
        elif services[name].get("command") != want:
            problems.append(f"{name}: runs {services[name].get('command')!r}, not {want!r}")
    data_volumes: dict[str, str] = {}
    for name, service in services.items():
        mounts = _mounts(service)
        for kind, source, target in mounts:
            if kind == "bind" and not (root / source).exists():
                problems.append(f"{name}: volume source {source} does not exist ({target})")
            if kind == "volume" and source not in declared_volumes:
                problems.append(f"{name}: named volume {source} is not declared")
        for secret in service.get("secrets") or []:
            secret_name = secret if isinstance(secret, str) else secret.get("source")
            spec = declared_secrets.get(secret_name)
            if spec is None:
                problems.append(f"{name}: secret {secret_name} is not declared")
            elif "file" in spec and not (root / spec["file"]).exists():
                problems.append(f"{name}: secret file {spec['file']} does not exist")
            elif "environment" in spec and spec["environment"] not in env:
                problems.append(f"{name}: secret {secret_name}'s variable is not in env.example")
        for target, spec in (service.get("depends_on") or {}).items():
            condition = spec.get("condition") if isinstance(spec, dict) else None
            if target not in services:
                problems.append(f"{name}: depends on {target}, which is no service")
            elif condition == "service_healthy" and "healthcheck" not in services[target]:
                problems.append(f"{name}: waits for {target} to be healthy; it has no healthcheck")
            elif condition == "service_completed_successfully" and target not in one_shot:
                problems.append(f"{name}: waits for {target} to complete; it restarts")
        if name not in one_shot and not (service.get("healthcheck") or {}).get("test"):
            problems.append(f"{name}: long-running and without a healthcheck")
        if service.get("image", "") != APP_IMAGE and "build" not in service:
            continue
        if service.get("build") != ".":
            problems.append(f"{name}: the crisis image is built from the repository (build: .)")
        problem = _command_problem(service.get("command"))
        if problem:
            problems.append(f"{name}: {problem}")
        environment = service.get("environment") or {}
        if not isinstance(environment, dict):
            problems.append(f"{name}: environment must be a mapping")
            continue
        values: dict[str, Any] = {}
        for key, raw in environment.items():
            if not key.startswith("CRISIS_"):
                problems.append(f"{name}: {key} is not a CRISIS_ setting")
            elif key not in known:
                problems.append(f"{name}: {key} is not a setting (crisis/settings.py)")
            else:
                values[known[key]] = _interpolate(str(raw), env)
        try:
            settings = Settings(**values)
        except ValidationError as exc:
            problems.append(f"{name}: invalid settings: {exc.errors()[0]['msg']}")
            continue
        for field in PATH_SETTINGS:
            if field not in values:
                continue
            path = PurePosixPath(values[field])
            cover = [m for m in mounts if m[2] in {str(path), *map(str, path.parents)}]
            if not cover:
                problems.append(f"{name}: {field} {path} is in no volume")
                continue
            kind, source, target = max(cover, key=lambda m: len(m[2]))
            inside = (root / source / path.relative_to(target)) if kind == "bind" else None
            if inside is not None and not inside.exists():
                problems.append(f"{name}: {field} {path} is not provided ({inside} missing)")
            if field == "data_dir" and kind == "volume":
                if source in data_volumes:
                    problems.append(
                        f"{name}: data volume {source} shared with {data_volumes[source]}"
                        " (each process keeps its own outbox and heartbeats there)"
                    )
                data_volumes[source] = name
        if not (settings.database_url or "").startswith("postgresql"):
            problems.append(f"{name}: CRISIS_DATABASE_URL must name the PostgreSQL service")
        if name not in one_shot and not settings.kafka_bootstrap:
            problems.append(f"{name}: CRISIS_KAFKA_BOOTSTRAP is not set (the embedded broker)")
    return problems


# --- the compose file as committed --------------------------------------------------------


def test_the_compose_file_has_no_problem() -> None:
    problems = compose_problems(load_compose())
    assert problems == [], "docker-compose.yml:\n" + "\n".join(problems)


def test_the_production_shape() -> None:
    services = load_compose()["services"]
    assert services["kafka"]["image"].startswith("apache/kafka")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["migrate"]["restart"] == "no"
    for name in set(SHAPE) - {"migrate"}:
        depends = services[name]["depends_on"]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}, name
        assert depends["postgres"] == {"condition": "service_healthy"}, name
    ports = {services[w]["ports"][0] for w in ("web-1", "web-2")}
    assert len(ports) == 2, "each web replica is published on its own port"
    env = services["web-1"]["environment"]
    assert env["CRISIS_DATABASE_URL"].startswith("postgresql+asyncpg://")
    assert env["CRISIS_NOTIFY_CONFIG"] == "/etc/crisis/notify.yaml"


def test_the_image_has_every_package_and_pg_dump() -> None:
    """The one image runs every crisis service, and `crisis backup` there runs pg_dump."""
    import tomllib

    dockerfile = (ROOT / "Dockerfile").read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]]
    for package in packages:
        assert f"COPY {package} ./{package}" in dockerfile, package
    assert "postgresql-client" in dockerfile
    assert "bookworm" in dockerfile, "its postgresql-client is 15, the compose's server"
    assert load_compose()["services"]["postgres"]["image"] == "postgres:15"


def test_the_web_replicas_share_no_consumer_group() -> None:
    """Each replica must see every log entry. The board feed polls ``log_entries`` in each
    web process (web/board/feed.py); no web module reads Kafka, so there is no group the two
    could split. A web Kafka consumer would need a group per replica: this fails first."""
    for path in (ROOT / "web").rglob("*.py"):
        text = path.read_text()
        for needle in ("AIOKafkaConsumer", "group_id=", "faust.App("):
            assert needle not in text, f"{path.relative_to(ROOT)} reads Kafka ({needle})"
    assert "log_entries" in (ROOT / "web" / "board" / "feed.py").read_text()


def test_the_mounted_configuration_loads() -> None:
    from crisis.domain.organisation import load_organisation
    from notifiers.config import load_notify_config

    organisation = load_organisation(ROOT / "crisis/domain/data/organisation.yaml")
    config = load_notify_config(ROOT / "deploy" / "notify.yaml")
    assert organisation.units and config.people


def test_the_monitoring_files_name_what_exists() -> None:
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    services = load_compose()["services"]
    for job in prometheus["scrape_configs"]:
        for target in job["static_configs"][0]["targets"]:
            host, _, port = target.partition(":")
            assert host in services, target
            if job["job_name"] != "crisis-web":
                env = services[host]["environment"]
                assert env[METRICS_PORT[host.rstrip("-12")]] == port, target
                assert env["CRISIS_WORKER_METRICS_HOST"] == "0.0.0.0"
    scraped = {t.partition(":")[0] for j in prometheus["scrape_configs"] for t in _targets(j)}
    assert {s for s in SHAPE if s not in ("migrate", "anchor")} <= scraped
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "crisis-dashboard.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p.get("targets", []))
    used = set(re.findall(r"\bcrisis_[a-z_]+", exprs))
    defined = _defined_metrics()
    assert used, "the dashboard graphs the crisis metrics"
    assert {_base(m) for m in used} <= defined, sorted({_base(m) for m in used} - defined)


#: The setting of each scraped process kind's metrics port.
METRICS_PORT = {
    "ingest": "CRISIS_WORKER_METRICS_PORT",
    "reactions": "CRISIS_REACTIONS_METRICS_PORT",
    "dispatcher": "CRISIS_DISPATCHER_METRICS_PORT",
}


def _targets(job: dict[str, Any]) -> list[str]:
    return [t for c in job["static_configs"] for t in c["targets"]]


def test_every_metric_is_documented() -> None:
    documented = set(re.findall(r"`(crisis_[a-z_]+)`", (ROOT / "docs" / "metrics.md").read_text()))
    missing = {
        m for m in _defined_metrics() if m not in documented and f"{m}_total" not in documented
    }
    assert not missing, sorted(missing)


def _base(metric: str) -> str:
    for suffix in ("_bucket", "_sum", "_count", "_total"):
        if metric.endswith(suffix):
            return metric[: -len(suffix)]
    return metric


def _defined_metrics() -> set[str]:
    from notifiers.metrics import DispatcherMetrics
    from streams.metrics import WorkerMetrics
    from web.api.metrics import WebMetrics

    names = set()
    for registry in (WorkerMetrics().registry, WebMetrics().registry, DispatcherMetrics().registry):
        for family in registry.collect():
            names.add(family.name)
    return names


@pytest.mark.parametrize(
    ("part", "age", "healthy"), [("ingest", 1.0, True), ("ingest", 60.0, False), (None, 0, False)]
)
def test_a_worker_healthcheck_is_its_heartbeat(
    tmp_path: Path, part: str | None, age: float, healthy: bool
) -> None:
    """The health command of ingest-1 run for real: a fresh heartbeat passes; a stale or
    missing one fails."""
    from crisis.runtime.heartbeat import write_json

    test = load_compose()["services"]["ingest-1"]["healthcheck"]["test"]
    assert test[:2] == ["CMD", "python"]
    if part is not None:
        write_json(tmp_path / f"{part}.beat", {"pid": 1, "at": time.time() - age})
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRISIS_")}
    env.update(CRISIS_RUN_DIR=str(tmp_path), PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, *test[2:]], env=env, timeout=60, check=False)
    assert (done.returncode == 0) is healthy


# --- the validator finds each kind of fault -----------------------------------------------


def _mutated() -> dict[str, Any]:
    """A copy without YAML's aliases: a change to one service changes no other."""
    return json.loads(json.dumps(load_compose()))  # type: ignore[no-any-return]


def test_a_missing_volume_source_is_reported() -> None:
    compose = _mutated()
    compose["services"]["dispatcher"]["volumes"][1] = "./deploy/absent.yaml:/etc/crisis/notify.yaml"
    problems = compose_problems(compose)
    assert any("volume source ./deploy/absent.yaml does not exist" in p for p in problems)
    assert any("notify_config /etc/crisis/notify.yaml is not provided" in p for p in problems)


def test_an_unknown_setting_is_reported() -> None:
    compose = _mutated()
    compose["services"]["web-2"]["environment"] = {
        **compose["services"]["web-2"]["environment"],
        "CRISIS_FOO": "1",
    }
    assert compose_problems(compose) == ["web-2: CRISIS_FOO is not a setting (crisis/settings.py)"]


def test_an_invalid_setting_value_is_reported() -> None:
    compose = _mutated()
    compose["services"]["ingest-1"]["environment"]["CRISIS_EVENTS_PARTITIONS"] = "zero"
    assert any(p.startswith("ingest-1: invalid settings") for p in compose_problems(compose))


def test_a_file_setting_outside_every_volume_is_reported() -> None:
    compose = _mutated()
    compose["services"]["reactions"]["environment"]["CRISIS_PLAYBOOKS"] = "/srv/playbooks"
    assert compose_problems(compose) == ["reactions: playbooks /srv/playbooks is in no volume"]


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["crisis", "wrker", "--role", "ingest"], "invalid choice: 'wrker'"),
        (["crisis", "worker", "--role", "ingestion"], "invalid choice: 'ingestion'"),
        (["crisis", "web", "--bind", "0.0.0.0"], "unrecognized arguments: --bind"),
        (["python", "-m", "notifiers", "--shards", "0/2"], "unrecognized arguments"),
        ("crisis migrate", "exec form"),
    ],
)
def test_an_unknown_command_is_reported(command: Any, expected: str) -> None:
    compose = _mutated()
    compose["services"]["migrate"]["command"] = command
    assert any(expected in p for p in compose_problems(compose)), compose_problems(compose)


def test_a_missing_healthcheck_or_dependency_is_reported() -> None:
    compose = _mutated()
    del compose["services"]["reactions"]["healthcheck"]
    compose["services"]["web-1"]["depends_on"]["broker"] = {"condition": "service_healthy"}
    compose["services"]["migrate"]["restart"] = "unless-stopped"
    problems = compose_problems(compose)
    assert "reactions: long-running and without a healthcheck" in problems
    assert "web-1: depends on broker, which is no service" in problems
    assert "web-2: waits for migrate to complete; it restarts" in problems


def test_a_shared_data_volume_or_unprovided_variable_is_reported() -> None:
    compose = _mutated()
    compose["services"]["web-2"]["volumes"][2] = "web-1-data:/var/lib/crisis"
    compose["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"] = "${PG_SECRET}"
    problems = compose_problems(compose)
    assert any("data volume web-1-data shared with web-1" in p for p in problems), problems
    assert "${PG_SECRET} has no default and deploy/env.example lacks it" in problems


# --- Docker itself, where it is installed ---------------------------------------------------


def test_docker_compose_config_accepts_it(tmp_path: Path) -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("docker is not installed")
    probe = subprocess.run(
        [docker, "compose", "version"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        pytest.skip(f"no docker compose plugin: {probe.stderr.strip().splitlines()[0]}")
    compose = ["-f", str(ROOT / "docker-compose.yml"), "--env-file", str(ENV_EXAMPLE)]
    done = subprocess.run(
        [docker, "compose", *compose, "--profile", "monitoring", "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
