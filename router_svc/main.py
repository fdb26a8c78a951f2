"""`bandit-router`: run one router replica until SIGINT/SIGTERM."""
from __future__ import annotations

import asyncio

from common.lifecycle import wait_for_signal
from common.logs import setup_logging
from common.metrics_http import ready_field, serve_metrics
from common.settings import RouterSettings

from .app import RouterApp


def one_blas_thread() -> None:
    """numpy's OpenBLAS on one thread. The router scores on the event loop's thread, in
    small products (a few requests by 472 features), and BLAS threads left spinning
    between them take cores from the embedder: under load on 2 cores, 215-247 Decides/s
    against 165-190 with a BLAS thread per core."""
    from threadpoolctl import ThreadpoolController

    ThreadpoolController().select(internal_api="openblas").limit(limits=1)


async def serve(settings: RouterSettings) -> None:
    app = await RouterApp(settings, settings.load_catalog()).start()
    metrics = serve_metrics(settings)
    http = f" http={app.http_port}" if app.http_port is not None else ""
    print(f"READY router {settings.router_id} port={app.port}{http}{ready_field(metrics)}", flush=True)
    await wait_for_signal()
    await app.stop()


def main() -> None:
    setup_logging()
    one_blas_thread()
    asyncio.run(serve(RouterSettings()))


if __name__ == "__main__":
    main()
