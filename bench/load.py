"""`./run.sh bench load [--json FILE]`: what a decision costs beside its embedding, and how routers scale.

In one run on this machine, side by side:
- the embedding model alone, in this process, for each backend of --backends (torch,
  onnx, onnx-int8; /N sets the texts per forward pass: torch/32 is one pass per 32 texts
  and onnx-int8/8 passes of 8, the ways before; @P sets the micro-batches at once, @1 one
  at a time over every core): batch 1 (p50, on the prompts the serial Decides send
  later: the floor of a serial decision) and
  micro-batches of 32, as many at once as a router runs them (throughput: the floor of a
  loaded router), each backend's vectors compared with torch float32's (cosine);
- through a router of the local stack (started here, with a replay worker): Decide and
  Route serially and closed loop at --in-flight requests in flight; Route open loop at
  --rate requests/s (default: 70% of the closed loop's throughput), so queueing shows;
  Decide at 1, 4, 16 and --in-flight in flight (the plot of latency against load);
- where the time goes, from the decision and result events of the serial Decides and
  Routes and the loaded Routes: embedding (waiting for it included), the rest of the
  decision, the expert, and everything else ("transport": gRPC, the Kafka writes, replies);
- Decide at --in-flight through 1 router on every core, then 2 sharing one port
  (SO_REUSEPORT), each pinned to half the cores, over 64 connections (least-request);
- where the cores go in each loaded run: CPU time per process (routers, worker, feedback,
  Kafka, Redis, this bench as the load generator) over the run's wall time (bench/cpu.py).
Every query is a distinct prompt of the bundled data set (no embedding-cache hits).
The ratios the issue asks for are in the JSON: decide_p50_over_bare (Decide's serial p50
over the bare batch-1 p50), decide_throughput_over_batched and route_throughput_over_batched
(closed-loop throughput over the bare batch-32 throughput; the bare figures are the `floor`:
the routers' backend measured before the stack starts and again after it stops, each
figure the faster of the two, since whatever else runs only slows the model), lost (no
reply by the deadline plus 10 s), embedding_backends; and decide_cpu_over_bare_cpu: the router's CPU time per
loaded Decide over the model's alone per text, on a CPU (the throughput ratios also count
the cores that the rest of the stack and the load generator take beside the router; with
the model on a GPU, CPU time per text says little).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np

from bandit.embedder import usable_cores
from common.dataset import BUNDLED, RoutingDataset
from common.logs import setup_logging
from common.settings import InfraSettings
from proto import events_pb2, router_pb2, router_pb2_grpc
from simulations.logs import read_all
from stack.experts_file import replay_catalog
from stack.local import LocalStack, ServiceProcess
from stack.procs import free_port

from .calls import Tally, paced, timed
from .cpu import CpuMeter
from .floor import Queries, bare_embedding, faster_floor

GRACE_S = 10.0
SCALING_CONNECTIONS = 64     # the kernel spreads connections, not calls: many, so the routers' shares even out


# -- calls through the router --------------------------------------------------------
def decide(conns: "Connections", query: str, timeout_s: float):
    return lambda timeout: conns.call("Decide", router_pb2.DecideRequest(query=query), timeout)


def route(conns: "Connections", query: str, timeout_s: float):
    return lambda timeout: conns.call("Route", router_pb2.RouteRequest(query=query, timeout_ms=int(timeout_s * 1000)),
                                      timeout)


async def closed_loop(name: str, make, conns: "Connections", queries: list[str], in_flight: int,
                      timeout_s: float) -> Tally:
    run, todo = Tally(name), iter(queries)

    async def worker():
        for q in todo:
            await timed(run, make(conns, q, timeout_s), timeout_s, GRACE_S)

    t = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    run.wall_s = time.monotonic() - t
    return run


async def open_loop(name: str, conns: "Connections", queries: list[str], rate: float, timeout_s: float) -> Tally:
    run, tasks = Tally(name), []
    t = time.monotonic()
    await paced(rate, None, len(queries), lambda i: tasks.append(asyncio.create_task(
        timed(run, route(conns, queries[i], timeout_s), timeout_s, GRACE_S))))
    await asyncio.gather(*tasks)
    run.wall_s = time.monotonic() - t
    return run


class Connections:
    """n separate connections to the routers' port (a local subchannel pool each), so
    SO_REUSEPORT spreads them over the routers listening there. Each call goes to the
    connection with the fewest calls outstanding (ties in turn): a client-side
    least-request balancer, as gRPC clients and proxies in front of routers run, so a
    router that happened to get more connections, or is slower, gets fewer calls."""

    def __init__(self, port: int, n: int):
        self.chans = [grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])
                      for _ in range(n)]
        self.stubs = [router_pb2_grpc.RouterStub(c) for c in self.chans]
        self.outstanding, self.calls = [0] * n, [0] * n
        self._turn = 0

    async def call(self, method: str, request, timeout: float):
        n = len(self.stubs)
        self._turn += 1
        i = min(range(n), key=lambda j: (self.outstanding[j], (j - self._turn) % n))
        self.outstanding[i] += 1
        self.calls[i] += 1
        try:
            return await getattr(self.stubs[i], method)(request, timeout=timeout)
        finally:
            self.outstanding[i] -= 1

    async def close(self) -> None:
        for c in self.chans:
            await c.close()


async def where_time_goes(bootstrap: str, run: Tally) -> dict:
    """Medians over the run's decisions: embedding, the rest of the decision, the expert,
    and the rest of the client's latency (Kafka hops, the reply, gRPC)."""
    s = InfraSettings(kafka_bootstrap=bootstrap)
    mine = set(run.ids)
    decisions = {d.decision_id: d for d in await read_all(bootstrap, s.decisions_topic, events_pb2.DecisionEvent)
                 if d.decision_id in mine}
    results = {r.decision_id: r for r in await read_all(bootstrap, s.results_topic, events_pb2.ExpertResult)
               if r.decision_id in mine and r.ok and not r.partial}
    rows = []
    for did, total in zip(run.ids, run.latencies):
        d, r = decisions.get(did), results.get(did)
        expert_ms = r.latency_s * 1000 if r is not None else 0.0     # a Decide has no expert call
        if d is not None and (r is not None or d.mode == events_pb2.DECISION_MODE_DECIDE):
            rows.append((d.embed_ms, d.decide_ms - d.embed_ms, expert_ms, total * 1000 - d.decide_ms - expert_ms))
    if not rows:
        return {}
    med = np.median(np.array(rows), axis=0)
    return {"decisions": len(rows), "embed_ms": float(med[0]), "rest_of_decision_ms": float(med[1]),
            "expert_ms": float(med[2]), "transport_ms": float(med[3])}


def plot(sweep: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    x = [s["in_flight"] for s in sweep]
    ax.plot(x, [s["p50_ms"] for s in sweep], "o-", label="Decide p50")
    ax.plot(x, [s["p99_ms"] for s in sweep], "s--", label="Decide p99")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("requests in flight")
    ax.set_ylabel("latency (ms)")
    ax2 = ax.twinx()
    ax2.plot(x, [s["throughput_qps"] for s in sweep], "^:", color="gray", label="throughput")
    ax2.set_ylabel("decisions/s")
    lines, labels = ax.get_legend_handles_labels()
    more, their = ax2.get_legend_handles_labels()
    ax.legend(lines + more, labels + their, loc="upper left")
    ax.set_title("Decide latency against load")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


async def through_router(args, stack: LocalStack, workdir: Path, queries: Queries, serial: list[str],
                         report: dict) -> None:
    """`serial`: the serial Decides' prompts, the ones the bare batch-1 floor was measured on."""
    data = RoutingDataset.load_or_exit(args.data)
    catalog = replay_catalog(workdir / "experts.toml", args.data.resolve(), data)
    port = free_port()
    env = stack.env(BR_EXPERTS_FILE=catalog.resolve(), BR_PORT=port, BR_EMBEDDING_BACKEND=args.router_backend)
    logs = workdir / "logs"
    services = [ServiceProcess("feedback.main", env, logs / "feedback.log", name="feedback"),
                ServiceProcess("workers.main", env, logs / "worker.log", name="worker"),
                ServiceProcess("router_svc.main", env, logs / "router1.log", name="router1")]
    second: ServiceProcess | None = None            # the scaling run's second router
    timeout_s, n, k = args.timeout_ms / 1000, args.requests, args.in_flight
    try:
        for p in services:
            p.spawn()
        for p in services:
            await asyncio.to_thread(p.wait_ready, 180)
        pids = {"bench (load generator)": os.getpid(), **{p.name: p.proc.pid for p in services},
                **({"kafka": stack.kafka.proc.pid} if stack.kafka else {}),
                **({"redis": stack.redis.proc.pid} if stack.redis else {})}
        cores = report["cores"] = {}
        conns = Connections(port, 1)
        await closed_loop("warm-up", decide, conns, queries.take(32), 8, timeout_s)
        # Steady state is what is measured: Route traffic first through every part (the
        # broker's JIT, the topics' first writes, the workers' and the reply consumers' first fetches).
        print(f"  warm-up: {args.warm_up} Route requests, {k} in flight", flush=True)
        await closed_loop("warm-up", route, conns, queries.take(args.warm_up), k, timeout_s)
        runs = {}
        for name, make, count, width in (("decide_serial", decide, 60, 1), ("decide_loaded", decide, n, k),
                                          ("route_serial", route, 40, 1), ("route_loaded", route, n, k)):
            print(f"  {name}: {count} requests, {width} in flight", flush=True)
            meter = CpuMeter(pids)
            texts = serial if name == "decide_serial" else queries.take(count)
            runs[name] = await closed_loop(name, make, conns, texts, width, timeout_s)
            if width > 1:
                cores[name] = meter.used()
        rate = args.rate or 0.7 * runs["route_loaded"].summary()["throughput_qps"]
        count = max(int(rate * args.open_s), 10)
        print(f"  route_open: {count} requests at {rate:.1f}/s", flush=True)
        runs["route_open"] = await open_loop("route_open", conns, queries.take(count), rate, timeout_s)
        sweep = []
        for width in sorted({1, 4, 16, k}):
            print(f"  decide sweep: {width} in flight", flush=True)
            r = await closed_loop(f"decide_{width}", decide, conns, queries.take(max(8 * width, 40)), width, timeout_s)
            sweep.append({"in_flight": width, **r.summary()})
        report["split"] = {name: await where_time_goes(stack.kafka_bootstrap, runs[name])
                           for name in ("decide_serial", "route_serial", "route_loaded")}
        await conns.close()
        # One router on every core, over many connections.
        print("  scaling: 1 router, then 2 on one port", flush=True)
        conns = Connections(port, SCALING_CONNECTIONS)
        meter = CpuMeter(pids)
        one = await closed_loop("decide_1_router", decide, conns, queries.take(n), k, timeout_s)
        cores["decide_1_router"] = meter.used()
        await conns.close()
        # Then two on the same port, each pinned to its half of the cores, as two containers
        # of half the CPUs each would be (unpinned, each sized its embedding passes for
        # every core and the two oversubscribed them: 1.3-1.5x one on 16 cores).
        cpus = sorted(os.sched_getaffinity(0))
        halves = [set(cpus[: len(cpus) // 2]), set(cpus[len(cpus) // 2:])] if len(cpus) > 1 else [None, None]
        await asyncio.to_thread(services[-1].stop)
        services[-1], second = (ServiceProcess("router_svc.main", env, logs / f"router{i}-of-2.log", name=f"router{i}",
                                               cpus=half) for i, half in ((1, halves[0]), (2, halves[1])))
        for r in (services[-1], second):
            r.spawn()
        for r in (services[-1], second):
            await asyncio.to_thread(r.wait_ready, 180)
        # New connections once both listen: the kernel spreads connections, not requests.
        conns = Connections(port, SCALING_CONNECTIONS)
        await closed_loop("warm-up", decide, conns, queries.take(32), 16, timeout_s)
        meter = CpuMeter({**pids, "router1": services[-1].proc.pid, second.name: second.proc.pid})
        two = await closed_loop("decide_2_routers", decide, conns, queries.take(n), k, timeout_s)
        cores["decide_2_routers"] = meter.used()
        await conns.close()
        report["runs"] = {name: r.summary() for name, r in runs.items()}
        report["sweep"] = sweep
        report["scaling"] = {"one": one.summary(), "two": two.summary(), "cores_each": [len(h or cpus) for h in halves],
                             "two_over_one": two.summary()["throughput_qps"] / max(one.summary()["throughput_qps"], 1e-9)}
        report["lost"] = sum(r.lost for r in (*runs.values(), one, two))
        report["router_backend"] = args.router_backend
        report["warm_up_requests"] = args.warm_up
    finally:
        if second is not None:
            second.stop()
        for p in reversed(services):
            p.stop()


def table(report: dict) -> str:
    lines = ["| embedding backend | batch-1 p50 ms | batch-32 q/s | x torch | cosine to torch (min) |",
             "|---|---|---|---|---|"]
    for name, b in report["embedding_backends"].items():
        if "unavailable" in b:
            lines.append(f"| {name} | unavailable: {b['unavailable'][:80]} | | | |")
        else:
            lines.append(f"| {name} | {b['batch1_p50_ms']:.1f} | {b['batch32_qps']:.1f} | "
                         f"{b['throughput_over_torch']:.2f} | {b['cosine_to_torch_min']:.4f} |")
    floor = report.get("floor", {})
    if "measured" in floor:
        (a, b) = floor["measured"]
        lines += ["", f"the floor ({floor['backend']}, before the stack started / after it stopped): "
                      f"{a['batch32_qps']:.1f} / {b['batch32_qps']:.1f} texts/s, batch-1 p50 {a['batch1_p50_ms']:.1f} / "
                      f"{b['batch1_p50_ms']:.1f} ms; the ratios are against the faster of each"]
    lines += ["", "| run | ok | errors | lost | p50 ms | p99 ms | q/s |", "|---|---|---|---|---|---|---|"]
    for r in [*report["runs"].values(), report["scaling"]["one"], report["scaling"]["two"]]:
        lines.append(f"| {r['name']} | {r['ok']} | {sum(r['errors'].values())} | {r['lost']} | {r['p50_ms']:.0f} | "
                     f"{r['p99_ms']:.0f} | {r['throughput_qps']:.1f} |")
    lines += ["", "| where the time goes (medians) | decisions | embedding ms | rest of the decision ms | "
                  "expert ms | transport ms |", "|---|---|---|---|---|---|"]
    for name, sp in report["split"].items():
        if sp:
            lines.append(f"| {name} | {sp['decisions']} | {sp['embed_ms']:.1f} | {sp['rest_of_decision_ms']:.1f} | "
                         f"{sp['expert_ms']:.1f} | {sp['transport_ms']:.1f} |")
    names = list(dict.fromkeys(name for used in report.get("cores", {}).values() for name in used if name != "total"))
    lines += ["", f"| where the cores go (cores used, {usable_cores()} usable here) | " + " | ".join(names) + " | total |",
              "|---" * (len(names) + 2) + "|"]
    for run, used in report.get("cores", {}).items():
        lines.append(f"| {run} | " + " | ".join(f"{used[n]:.2f}" if n in used else "" for n in names)
                     + f" | {used['total']:.2f} |")
    lines += ["", ", ".join(f"{k} {report[k]:.2f}" for k in (
        "decide_p50_over_bare", "decide_throughput_over_batched", "route_throughput_over_batched")) +
        f", two routers over one {report['scaling']['two_over_one']:.2f}, lost {report['lost']}",
        f"CPU per loaded Decide in the router {report['decide_cpu_ms']:.2f} ms, "
        f"{report['decide_cpu_over_bare_cpu']:.2f}x the model's alone per text"]
    return "\n".join(lines)


def main(argv=None) -> None:
    setup_logging()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--in-flight", type=int, default=32, help="requests in flight in the closed loops")
    p.add_argument("--requests", type=int, default=320, help="requests per closed-loop run")
    p.add_argument("--rate", type=float, help="open-loop Route rate (default: 70%% of the closed loop's)")
    p.add_argument("--warm-up", type=int, default=320, help="Route requests through the stack before anything is measured")
    p.add_argument("--open-s", type=float, default=15.0, help="seconds of open-loop traffic")
    p.add_argument("--timeout-ms", type=int, default=10_000, help="each request's deadline")
    p.add_argument("--backends", default="torch,torch/32,onnx,onnx-int8/8,onnx-int8",
                   help="embedding backends measured alone, /N: N texts per forward pass (default 8 on torch, 32 on CUDA, 1 on ONNX), @P: P "
                        "ONNX micro-batches at once (default one per core); torch first: the reference; "
                        "torch/32 is sentence-transformers' batch of 32 as it comes")
    p.add_argument("--router-backend", default="onnx-int8",
                   help="the routers' embedding backend (default: BR_EMBEDDING_BACKEND's on a CPU)")
    p.add_argument("--data", type=Path, default=BUNDLED, help="routing data set: its prompts and replay experts")
    p.add_argument("--dir", type=Path, help="stack data and logs (default: a temporary folder)")
    p.add_argument("--json", type=Path, help="write the report here too")
    p.add_argument("--plot", type=Path, default=Path("bench-load.png"), help="latency against load")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not backends or backends[0] != "torch":
        raise SystemExit("error: --backends must start with torch (the reference)")
    if args.router_backend not in backends:              # the routers' floor is measured too
        backends.append(args.router_backend)
    queries = Queries(RoutingDataset.load_or_exit(args.data), args.seed)
    report: dict = {"embedding_backends": {}}
    ref_texts = queries.take(64)
    # Batch 1 is timed on the very prompts the serial Decides send (a median over other
    # prompts is another sample of lengths: 60 of the bundled prompts, 3.4-3.6 ms on one
    # sample and 4.3-4.6 on the next, int8).
    serial = queries.take(60)
    reference, batched = None, {}
    for backend in backends:
        print(f"embedding alone: {backend}", flush=True)
        batched[backend] = queries.take(640)
        b = bare_embedding(backend, batched[backend], reference, ref_texts, serial)
        vectors = b.pop("_vectors", None)
        if backend == "torch":
            reference = vectors
        report["embedding_backends"][backend] = b
    torch_qps = report["embedding_backends"]["torch"]["batch32_qps"]
    for b in report["embedding_backends"].values():
        if "batch32_qps" in b:
            b["throughput_over_torch"] = b["batch32_qps"] / torch_qps
    with tempfile.TemporaryDirectory(prefix="load-") as tmp:
        workdir = args.dir or Path(tmp)
        print("through the router (starting the stack)", flush=True)
        with LocalStack(workdir / "stack", kafka_bootstrap="", redis_url="") as stack:
            asyncio.run(through_router(args, stack, workdir, queries, serial, report))
    print(f"embedding alone again, the stack stopped: {args.router_backend}", flush=True)
    again = bare_embedding(args.router_backend, batched[args.router_backend], reference, ref_texts, serial)
    again.pop("_vectors", None)
    bare = report["floor"] = faster_floor(report["embedding_backends"][args.router_backend], again)
    runs = report["runs"]
    report["decide_p50_over_bare"] = runs["decide_serial"]["p50_ms"] / bare["batch1_p50_ms"]
    report["decide_throughput_over_batched"] = runs["decide_loaded"]["throughput_qps"] / bare["batch32_qps"]
    report["route_throughput_over_batched"] = runs["route_loaded"]["throughput_qps"] / bare["batch32_qps"]
    # What the router itself spends per loaded Decide against what the model alone spends
    # per text: the throughput ratios also count the cores the broker, the feedback app and
    # the load generator take beside it (on a small machine, most of the gap).
    router_cpu_ms = report["cores"]["decide_loaded"].get("router1", 0.0) / runs["decide_loaded"]["throughput_qps"] * 1000
    report["decide_cpu_ms"] = router_cpu_ms
    report["decide_cpu_over_bare_cpu"] = router_cpu_ms / bare["batch32_cpu_ms"]
    plot(report["sweep"], args.plot)
    print(table(report))
    print(f"plot: {args.plot}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
