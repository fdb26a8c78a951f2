"""`bandit-stack`: the local stack and every service, running until Ctrl-C.

Starts Kafka and Redis (unless BR_KAFKA_BOOTSTRAP / BR_REDIS_URL point elsewhere), the
feedback app, a worker process and a router on --port (gRPC) and --http-port (the
OpenAI-compatible door and the live dashboard), with the experts of --experts
(a TOML catalog) or, by default, a replay expert per model of the bundled data set.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import time
from pathlib import Path

from common.lifecycle import wait_for_signal
from common.logs import setup_logging
from common.dataset import BUNDLED, RoutingDataset

from .experts_file import replay_catalog
from .local import LocalStack, ServiceProcess


def main(argv=None) -> None:
    setup_logging()
    logging.getLogger("stack").setLevel(logging.INFO)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--experts", type=Path, help="expert catalog (TOML); default: replay the bundled data set")
    p.add_argument("--data", type=Path, default=BUNDLED,
                   help="routing data set whose models become replay experts (default: the bundled one)")
    p.add_argument("--port", type=int, default=50051, help="the router's gRPC port (0: any free one)")
    p.add_argument("--http-port", type=int, default=8080,
                   help="the router's HTTP port: OpenAI-compatible door and dashboard (0: any free one)")
    p.add_argument("--dir", type=Path, default=Path("stack-data"), help="data and logs (kept between runs)")
    args = p.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    if args.experts and not args.experts.is_file():
        raise SystemExit(f"error: {args.experts}: no such expert catalog (a TOML file, see compose/experts.toml)")
    catalog = args.experts or replay_catalog(args.dir / "experts.toml", args.data.resolve(),
                                             RoutingDataset.load_or_exit(args.data))
    with LocalStack(args.dir) as stack:
        env = stack.env(BR_EXPERTS_FILE=catalog.resolve(), BR_PORT=args.port, BR_HTTP_PORT=args.http_port)
        procs = [ServiceProcess(m, env, args.dir / "logs" / f"{m.split('.')[0]}.log").spawn()
                 for m in ("feedback.main", "workers.main", "router_svc.main")]
        try:
            for proc in procs:
                proc.wait_ready()
            http = f"http://127.0.0.1:{procs[-1].field('http')}"
            print(f"\nrouter: 127.0.0.1:{procs[-1].field('port')} (gRPC, reflection on)\n"
                  f"http:   {http}/v1 (OpenAI-compatible: base_url for any OpenAI SDK)\n"
                  f"dashboard: {http}/dashboard/\nkafka:  {stack.kafka_bootstrap}\n"
                  f"redis:  {stack.redis_url}\nlogs:   {args.dir / 'logs'}\nCtrl-C stops everything.", flush=True)
            asyncio.run(wait_for_signal())
        finally:
            t = time.monotonic()
            for proc in reversed(procs):
                proc.stop()
            print(f"stopped in {time.monotonic() - t:.1f}s")


if __name__ == "__main__":
    main()
