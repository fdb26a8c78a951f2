"""Each process's Prometheus endpoint (router, worker, feedback), from one setting.

The port actually bound is returned so the READY line can name it (port 0 lets the OS
pick one: tests and several processes on one host).
"""
from __future__ import annotations

from prometheus_client import start_http_server

from .settings import InfraSettings


def serve_metrics(settings: InfraSettings) -> int | None:
    """Start /metrics in a background thread when BR_METRICS_PORT is set; the bound port."""
    if settings.metrics_port is None:
        return None
    server, _ = start_http_server(settings.metrics_port, addr=settings.metrics_host)
    return server.server_port


def ready_field(port: int | None) -> str:
    return f" metrics={port}" if port is not None else ""
