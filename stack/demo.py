"""`bandit-demo`: the whole loop on a routing data set, as a backend team would run it.

Starts Kafka, Redis, the feedback app, one worker process (a replay expert per model of
the data set) and a router; then sends the data set's queries over gRPC and streams each
answer's quality back as a rating, printing progress, a summary against always-premium,
and a plot.

By default the policy (grouped Thompson sampling) first learns from `--warm-rows` labelled
rows, as a team with labelled traffic would (simulations/warmstart.py), and those rows are
never routed: the queries sent are other rows. `--cold` starts from nothing instead. Each
request carries its row's task as a hint (`task`), as a product that labels its traffic
would, so the policy learns each kind's best expert; `--no-hints` sends none.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import shutil
import time
from pathlib import Path

import grpc

from common.logs import setup_logging
from proto import router_pb2, router_pb2_grpc
from common.dataset import BUNDLED, RoutingDataset
from simulations.policy_runs import POLICY_PARAMS as REPLAY_PARAMS

from .experts_file import replay_catalog
from .local import LocalStack, ServiceProcess
from .report import DemoLog, plot, summary

POLICY = "grouped_ts"



def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=BUNDLED,
                   help="routing data set (.jsonl or .jsonl.gz, meta beside it; default: the bundled one)")
    p.add_argument("--queries", type=int, default=2000, help="queries to send (sampled without replacement)")
    p.add_argument("--warm-rows", type=int, default=None,
                   help="labelled rows the policy learns from before routing (never routed themselves; "
                        "default 3000, or 500 with --multimodal)")
    p.add_argument("--multimodal", action="store_true",
                   help="route the generated multimodal set (images; simulations/multimodal_set.py), made "
                        "once and cached, instead of --data")
    p.add_argument("--multimodal-rows", type=int, default=2000, help="rows of the generated set")
    p.add_argument("--cold", action="store_true", help="no warm start: the policy learns from zero")
    p.add_argument("--no-hints", action="store_true", help="send no request hints (default: each row's task)")
    p.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    p.add_argument("--cost-weight", type=float, default=0.1,
                   help="lambda, in units of the premium expert's mean cost: 0.1 means the premium's "
                        "mean cost is worth 0.1 quality")
    p.add_argument("--params", default=json.dumps(REPLAY_PARAMS[POLICY]),
                   help=f"{POLICY} hyperparameters as JSON (default: the replay's)")
    p.add_argument("--out", type=Path, default=Path("demo-out"), help="folder for the plot, summary and logs")
    p.add_argument("--seed", type=int, default=7)
    return p.parse_args(argv)


def hints_of(dataset: RoutingDataset, no_hints: bool) -> tuple[str, ...]:
    """The row fields sent as request hints: the task, when every row names one."""
    return () if no_hints or not all(r.task for r in dataset.rows) else ("task",)


async def drive(args, rows, dataset: RoutingDataset, port: int, cost_weight: float,
                hints: tuple[str, ...]) -> DemoLog:
    record = DemoLog(dataset)
    sem = asyncio.Semaphore(args.concurrency)
    started = time.monotonic()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = router_pb2_grpc.RouterStub(channel)

        async def one(row) -> None:
            async with sem:
                opts = router_pb2.RouteOptions(metadata={"item_id": row.id}, cost_weight=cost_weight,
                                               hints={h: getattr(row, h) for h in hints})
                parts = [router_pb2.ContentPart(media_type=p.media_type, data=p.data, name=p.name)
                         for p in dataset.media_parts(row)]
                try:
                    resp = await stub.Route(router_pb2.RouteRequest(query=row.prompt, options=opts, parts=parts),
                                            timeout=30)
                except grpc.aio.AioRpcError as exc:
                    record.error(exc.code().name)
                    return
                quality = row.outcomes[resp.expert].quality
                await stub.Feedback(router_pb2.FeedbackRequest(
                    decision_id=resp.decision_id, quality=quality, source="benchmark"), timeout=10)
                record.add(row, resp, quality)
                if record.n % max(1, len(rows) // 20) == 0:
                    print(record.progress(len(rows), time.monotonic() - started), flush=True)

        await asyncio.gather(*(one(r) for r in rows))
    return record


def warm_start(dataset: RoutingDataset, labelled, redis_url: str, params: dict, hints: tuple[str, ...]) -> None:
    """Learn from the labelled rows with full information; publish as the first snapshot."""
    from common.settings import PolicySettings
    from simulations.warmstart import learn_and_publish

    t0 = time.monotonic()
    part = RoutingDataset(dataset.name + "-warm", dataset.premium, dataset.cost_unit, dataset.experts, labelled,
                          root=dataset.root)
    learn_and_publish(part, range(len(labelled)), PolicySettings(redis_url=redis_url, policy=POLICY, policy_params=params),
                      hints=hints, log=lambda line: print(line, flush=True))
    print(f"warm start: {POLICY} learned from {len(labelled)} labelled rows, never routed "
          f"({time.monotonic() - t0:.1f}s)", flush=True)


def multimodal_data(rows: int) -> Path:
    """The generated multimodal set, built once per size in the cache folder (minutes: every
    image goes through Tesseract and OpenCV)."""
    from common.cache import cache_dir
    from simulations.multimodal_set import build

    out = cache_dir() / f"multimodal-{rows}"
    data = out / "multimodal.jsonl"
    if not data.with_name("multimodal.meta.json").exists():     # written last: a whole set
        print(f"generating the multimodal set ({rows} images) in {out}", flush=True)
        build(out, rows, log=lambda line: print(line, flush=True))
    return data


def main(argv=None) -> None:
    setup_logging()
    logging.getLogger("stack").setLevel(logging.INFO)
    args = parse_args(argv)
    if args.multimodal:
        args.data = multimodal_data(args.multimodal_rows)
    if args.warm_rows is None:
        args.warm_rows = 500 if args.multimodal else 3000
    dataset = RoutingDataset.load_or_exit(args.data)
    shuffled = random.Random(args.seed).sample(dataset.rows, len(dataset.rows))
    labelled = [] if args.cold else shuffled[:args.warm_rows]
    rest = shuffled[len(labelled):]
    if not rest:
        raise SystemExit(f"--warm-rows {args.warm_rows} leaves no rows of {len(dataset.rows)} to route; use fewer")
    rows = rest[:args.queries]
    hints = hints_of(dataset, args.no_hints)
    premium_cost = sum(r.outcomes[dataset.premium].cost for r in dataset.rows) / len(dataset.rows)
    cost_weight = args.cost_weight / premium_cost if premium_cost > 0 else 0.0
    args.out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(args.out / "stack", ignore_errors=True)   # every demo starts from an empty stack
    print(f"data set {dataset.name}: {len(dataset.rows)} queries, {len(dataset.experts)} experts, "
          f"premium {dataset.premium}; {'cold start' if args.cold else f'warm start from {len(labelled)} labelled rows'}; "
          f"hints: {','.join(hints) or 'none'}; "
          f"sending {len(rows)} others; lambda {cost_weight:.4g}/{dataset.cost_unit}", flush=True)
    t0 = time.monotonic()
    with LocalStack(args.out / "stack") as stack:
        print(f"stack up: Kafka {stack.kafka_bootstrap}, Redis {stack.redis_url} "
              f"({time.monotonic() - t0:.1f}s)", flush=True)
        catalog = replay_catalog(args.out.resolve() / "experts.toml", args.data.resolve(), dataset)
        env = stack.env(BR_EXPERTS_FILE=catalog, BR_DEFAULT_COST_WEIGHT=cost_weight, BR_PORT=0, BR_HTTP_PORT=0,
                        BR_POLICY=POLICY, BR_POLICY_PARAMS=args.params, BR_SEED=args.seed)
        if labelled:
            warm_start(dataset, labelled, stack.redis_url, json.loads(args.params), hints)
        logs = args.out / "logs"
        procs = [ServiceProcess("feedback.main", env, logs / "feedback.log"),
                 ServiceProcess("workers.main", env, logs / "worker.log"),
                 ServiceProcess("router_svc.main", env, logs / "router.log")]
        try:
            for p in procs:
                p.spawn()
            for p in procs:
                p.wait_ready()
            http = f"http://127.0.0.1:{procs[-1].field('http')}"
            print(f"services up ({time.monotonic() - t0:.1f}s); router gRPC port {procs[-1].field('port')}, "
                  f"OpenAI-compatible {http}/v1, dashboard {http}/dashboard/; routing...", flush=True)
            record = asyncio.run(drive(args, rows, dataset, int(procs[-1].field("port")), cost_weight, hints))
        finally:
            for p in reversed(procs):
                p.stop()
    result = {**summary(record, time.monotonic() - t0), "policy": POLICY, "warm_start_rows": len(labelled),
              "hints": list(hints)}
    (args.out / "summary.json").write_text(json.dumps(result, indent=2))
    plot(record, args.out / "demo.png")
    print(record.table(result))
    print(f"plot: {args.out / 'demo.png'}  summary: {args.out / 'summary.json'}")


if __name__ == "__main__":
    main()
