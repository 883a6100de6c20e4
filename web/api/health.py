"""Liveness and metrics: the two endpoints an operator's monitoring calls.

``/healthz`` reports each part -- ``database``, ``broker``, ``ingest``, ``reactions``,
``dispatcher`` -- and answers 503 when accepted events cannot reach the crisis log: the
database or the broker does not answer, the ingest worker's heartbeat stopped, the log has
taken nothing the outbox sent for a while, or the tree is draining for a stop. Parts that this
machine's ``crisis up`` does not run are reported ``absent`` and do not count. It answers
anyone; ``/metrics`` only a scraper sending ``CRISIS_METRICS_TOKEN`` as its bearer token, or an
admin (token or browser login).
"""

from __future__ import annotations

import asyncio
import hmac
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from crisis.domain.vocabulary import Role
from crisis.kafka.broker import kafka_api_versions_ok
from crisis.runtime import heartbeat
from crisis.settings import Settings
from web.deps import SessionDep, bearer_token, get_current_user
from web.errors import RETRY_AFTER
from web.limits import INGEST_PATHS

router = APIRouter(tags=["health"])

#: Parts whose failure stops accepted events from reaching the log (→ 503).
BLOCKING = ("database", "broker", "ingest")
#: Seconds the outbox may wait for the log to take any sent event before ingest counts as stuck.
STALL_AFTER = 60.0


async def _database(request: Request) -> str:
    try:
        async with request.app.state.engine.connect() as conn:
            await asyncio.wait_for(conn.execute(text("SELECT 1")), 5.0)
    except Exception as exc:
        return f"down: {type(exc).__name__}"
    return "ok"


async def _broker(settings: Settings) -> str:
    if not settings.kafka_bootstrap:
        return "absent"
    for host_port in settings.kafka_bootstrap.split(","):
        host, _, port = host_port.strip().rpartition(":")
        if await asyncio.to_thread(kafka_api_versions_ok, host, int(port), 1.0):
            return "ok"
    return "down"


def _worker(settings: Settings, part: str, expected: bool) -> str:
    age = heartbeat.age(settings.effective_run_dir, part)
    if age is None:
        return "down: never started" if expected else "absent"
    if age > heartbeat.STALE_AFTER:
        return f"down: no heartbeat for {age:.0f} s" if expected else "absent"
    return "ok"


@router.get("/healthz")
async def healthz(request: Request) -> JSONResponse:
    settings: Settings = request.app.state.settings
    run_dir = settings.effective_run_dir
    tree = heartbeat.tree(run_dir)
    expected = set(tree.get("parts", {})) if tree else set()
    database, broker = await asyncio.gather(_database(request), _broker(settings))
    parts: dict[str, Any] = {"database": database, "broker": broker}
    for part in ("ingest", "reactions", "dispatcher"):
        parts[part] = _worker(settings, part, part in expected)
    producer = request.app.state.producer
    if producer is not None:
        parts["outbox"] = producer.outbox_depth()
        stalled = producer.stalled_for()
        if stalled > STALL_AFTER and parts["ingest"] in ("ok", "absent"):
            parts["ingest"] = f"stalled: the log took nothing for {stalled:.0f} s"
    if tree:
        parts["restarts"] = {
            name: part.get("restarts", 0) for name, part in tree.get("parts", {}).items()
        }
    failing = [p for p in BLOCKING if parts[p] not in ("ok", "absent")]
    draining = heartbeat.draining(run_dir)
    if failing or draining:
        status = "draining" if draining else "unavailable"
        body = {"status": status, "failing": failing, **parts}
        return JSONResponse(body, status_code=503, headers={"Retry-After": str(RETRY_AFTER)})
    degraded = [p for p in ("reactions", "dispatcher") if parts[p] not in ("ok", "absent")]
    return JSONResponse({"status": "degraded" if degraded else "ok", **parts})


async def _may_scrape(request: Request, session: AsyncSession) -> None:
    """``CRISIS_METRICS_TOKEN`` as a bearer token, or an admin's login; else 401/403."""
    token = request.app.state.settings.metrics_token
    given = bearer_token(request.headers)
    if token is not None and given is not None:
        if hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
            return
    user = await get_current_user(request, session)
    if user.role != Role.ADMIN:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "målinger krever metrikk-token eller admin / metrics need the metrics token or admin",
        )


@router.get("/metrics")
async def metrics(request: Request, session: SessionDep) -> Response:
    await _may_scrape(request, session)
    return Response(
        generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )


def draining_guard(request: Request) -> Response | None:
    """While the tree drains for a stop, new events are refused with 503 and Retry-After."""
    if request.method != "POST" or request.url.path.rstrip("/") not in INGEST_PATHS:
        return None
    settings: Settings = request.app.state.settings
    if not heartbeat.draining(settings.effective_run_dir):
        return None
    return JSONResponse(
        {
            "errors": [
                {
                    "index": None,
                    "field": "service",
                    "message": "stanser / stopping: no new events accepted now; send again later",
                }
            ]
        },
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER)},
    )
