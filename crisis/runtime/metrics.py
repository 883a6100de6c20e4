"""The Prometheus port of a worker or dispatcher process (docs/metrics.md).

Each role has a default port of its own, so ``crisis up`` (one host, one of each) never
collides. A second process of the same role on one host finds the port taken: it logs a
warning naming the setting to change and runs on without metrics, never stops for it.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector

log = logging.getLogger("crisis.metrics")


def with_process_metrics(registry: CollectorRegistry) -> CollectorRegistry:
    """Add ``process_*`` (CPU, memory, open files) and ``python_info`` to a registry."""
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


def serve_metrics(
    registry: CollectorRegistry, *, port: int, host: str, role: str, setting: str
) -> int | None:
    """Serve ``registry`` on ``host:port`` in a daemon thread; the port, or None when off
    (port 0) or taken. ``setting`` names the environment variable an operator changes."""
    if not port:
        log.info("%s: metrics off (%s=0)", role, setting)
        return None
    from prometheus_client import start_http_server

    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        log.warning(
            "%s: metrics port %s:%d unavailable (%s); running without metrics. "
            "Give each process on this host its own port with %s (docs/metrics.md).",
            role,
            host,
            port,
            exc.strerror or exc,
            setting,
        )
        return None
    bound = int(server.server_address[1])
    log.info("%s: metrics on http://%s:%d/metrics", role, host, bound)
    return bound
