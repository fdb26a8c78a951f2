"""`bandit-router`: run one router replica until SIGINT/SIGTERM."""
from __future__ import annotations

import asyncio

from prometheus_client import start_http_server

from common.lifecycle import wait_for_signal
from common.logs import setup_logging
from common.settings import RouterSettings

from .app import RouterApp


async def serve(settings: RouterSettings) -> None:
    app = await RouterApp(settings, settings.load_catalog()).start()
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.host)
    print(f"READY router {settings.router_id} port={app.port}", flush=True)
    await wait_for_signal()
    await app.stop()


def main() -> None:
    setup_logging()
    asyncio.run(serve(RouterSettings()))


if __name__ == "__main__":
    main()
