"""`bandit-router`: run one router replica until SIGINT/SIGTERM."""
from __future__ import annotations

import asyncio

from common.lifecycle import wait_for_signal
from common.logs import setup_logging
from common.metrics_http import ready_field, serve_metrics
from common.settings import RouterSettings

from .app import RouterApp


async def serve(settings: RouterSettings) -> None:
    app = await RouterApp(settings, settings.load_catalog()).start()
    metrics = serve_metrics(settings)
    http = f" http={app.http_port}" if app.http_port is not None else ""
    print(f"READY router {settings.router_id} port={app.port}{http}{ready_field(metrics)}", flush=True)
    await wait_for_signal()
    await app.stop()


def main() -> None:
    setup_logging()
    asyncio.run(serve(RouterSettings()))


if __name__ == "__main__":
    main()
