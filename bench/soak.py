"""`./run.sh bench soak --minutes M --rate R`: the whole stack under steady traffic while it is hurt.

Starts its own Kafka, Redis, feedback app, two worker processes (replay experts of the
bundled data set) and a router, all as processes, then sends `Route` at a fixed rate:
open loop, so a slow stack does not slow the sender and queueing shows. Every answered
request is rated with the data set's quality for the expert that answered (retried
until accepted). On a schedule, one fault per phase: SIGKILL a worker, SIGKILL the
broker, stop Redis, SIGKILL the feedback app; each comes back after --down-s.

Per phase: requests sent, answered, failed by status, lost (no reply of any kind by the
request's deadline plus --grace-s), p50/p99 latency of the answered. At the end, once the
learner has caught up: distinct ratings accepted against those that became rewards, and
rewards on the topic against updates learned. Exit status 1 when anything was lost or a
rating was not learned exactly once.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from pathlib import Path

import grpc

from common.dataset import BUNDLED, RoutingDataset
from common.logs import setup_logging
from proto import events_pb2, router_pb2, router_pb2_grpc
from simulations.logs import read_all
from stack.experts_file import replay_catalog
from stack.local import LocalStack, ServiceProcess

from .calls import Tally, paced, timed

RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED)


def phase_row(tally: Tally) -> dict:
    t = tally.summary()
    return {"phase": t["name"], "sent": t["sent"], "answered": t["ok"], "failed": t["errors"], "lost": t["lost"],
            "p50_ms": t["p50_ms"], "p99_ms": t["p99_ms"]}


class Faults:
    """The processes the soak hurts, and how each comes back."""

    def __init__(self, stack: LocalStack, workers: list[ServiceProcess], feedback: ServiceProcess, down_s: float):
        self.stack, self.workers, self.feedback, self.down_s = stack, workers, feedback, down_s

    def worker(self) -> None:
        self._kill_and_respawn(self.workers[0])

    def feedback_app(self) -> None:
        self._kill_and_respawn(self.feedback)

    def broker(self) -> None:
        self.stack.kafka.kill()
        time.sleep(self.down_s)
        self.stack.kafka.start()

    def redis(self) -> None:
        self.stack.redis.stop()
        time.sleep(self.down_s)
        self.stack.redis.start()

    def _kill_and_respawn(self, proc: ServiceProcess) -> None:
        proc.proc.kill()
        proc.proc.wait()
        time.sleep(self.down_s)
        proc.spawn().wait_ready(180)


SCHEDULE = [("steady", None), ("worker SIGKILL", "worker"), ("broker SIGKILL", "broker"),
            ("redis restart", "redis"), ("feedback SIGKILL", "feedback_app"), ("steady, after", None)]


class Soak:
    def __init__(self, port: int, rows, rate: float, timeout_ms: int, grace_s: float, seed: int):
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self.stub = router_pb2_grpc.RouterStub(self.channel)
        self.rows, self.rate, self.timeout_ms, self.grace_s = rows, rate, timeout_ms, grace_s
        self.rnd = random.Random(seed)
        self.phases: list[Tally] = []
        self.rated: set[str] = set()
        self.rating_gave_up = 0
        self.tasks: set[asyncio.Task] = set()

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def run_phase(self, phase: Tally, seconds: float, fault=None) -> None:
        """Send at the rate for `seconds`; the fault (blocking) runs in a thread meanwhile."""
        self.phases.append(phase)
        hurting = asyncio.create_task(asyncio.to_thread(fault)) if fault else None
        await paced(self.rate, seconds, None, lambda _: self._spawn(self.route(phase, self.rnd.choice(self.rows))))
        if hurting:
            await hurting            # the phase ends once the hurt part is back

    async def route(self, phase: Tally, row) -> None:
        resp = await timed(phase, lambda timeout: self.stub.Route(
            router_pb2.RouteRequest(query=row.prompt, timeout_ms=self.timeout_ms), timeout=timeout),
            self.timeout_ms / 1000, self.grace_s)
        if resp is not None:
            await self.rate_it(resp.decision_id, row.outcomes[resp.expert].quality)

    async def rate_it(self, decision_id: str, quality: float, patience_s: float = 300.0) -> None:
        """Retry until the rating is accepted: a retry after one that did land is a second
        rating of the decision, which the join dead-letters (learned once)."""
        deadline = time.monotonic() + patience_s
        while True:
            try:
                await self.stub.Feedback(router_pb2.FeedbackRequest(decision_id=decision_id, quality=quality),
                                         timeout=10)
                self.rated.add(decision_id)
                return
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in RETRYABLE or time.monotonic() > deadline:
                    self.rating_gave_up += 1
                    return
                await asyncio.sleep(0.5)

    async def drain(self) -> None:
        while self.tasks:
            await asyncio.wait(set(self.tasks))

    async def learned(self) -> int:
        info = await self.stub.ListExperts(router_pb2.ListExpertsRequest(), timeout=10)
        return sum(e.updates for e in info.experts)


async def settle(soak: Soak, stack: LocalStack, timeout_s: float) -> dict:
    """Wait until every accepted rating is a reward and every reward is learned once."""
    from common.settings import InfraSettings

    s = InfraSettings(kafka_bootstrap=stack.kafka_bootstrap)
    deadline = time.monotonic() + timeout_s
    while True:
        rewards = await read_all(s.kafka_bootstrap, s.rewards_topic, events_pb2.RewardEvent)
        rewarded = {r.decision_id for r in rewards}
        learned = await soak.learned()
        out = {"ratings_accepted": len(soak.rated), "ratings_rewarded": len(soak.rated & rewarded),
               "rewards": len(rewarded), "learned": learned, "rating_gave_up": soak.rating_gave_up}
        if (out["ratings_rewarded"] == out["ratings_accepted"] and learned == len(rewarded)) \
                or time.monotonic() > deadline:
            return out
        await asyncio.sleep(2)


def table(phases: list[dict], totals: dict) -> str:
    lines = ["| phase | sent | answered | failed (by status) | lost | p50 ms | p99 ms |", "|---|---|---|---|---|---|---|"]
    for p in phases:
        failed = ", ".join(f"{k} {v}" for k, v in sorted(p["failed"].items())) or "0"
        lines.append(f"| {p['phase']} | {p['sent']} | {p['answered']} | {failed} | {p['lost']} | "
                     f"{p['p50_ms']:.0f} | {p['p99_ms']:.0f} |")
    lines.append("")
    lines.append(f"ratings accepted {totals['ratings_accepted']}, of them rewarded {totals['ratings_rewarded']}; "
                 f"rewards {totals['rewards']}, learned {totals['learned']}; ratings given up "
                 f"{totals['rating_gave_up']}")
    return "\n".join(lines)


async def soak_run(args, stack: LocalStack, workdir: Path) -> dict:
    data = RoutingDataset.load_or_exit(args.data)
    catalog = replay_catalog(workdir / "experts.toml", args.data.resolve(), data)
    env = stack.env(BR_EXPERTS_FILE=catalog.resolve(), BR_PORT=0, BR_LEARNER_FLUSH_S=0.25)
    logs = workdir / "logs"
    feedback = ServiceProcess("feedback.main", env, logs / "feedback.log")
    workers = [ServiceProcess("workers.main", env, logs / f"worker{i}.log", name=f"worker{i}") for i in range(2)]
    router = ServiceProcess("router_svc.main", env, logs / "router.log")
    procs = [feedback, *workers, router]
    try:
        for p in procs:
            p.spawn()
        for p in procs:
            await asyncio.to_thread(p.wait_ready, 180)
        soak = Soak(int(router.field("port")), data.rows, args.rate, args.timeout_ms, args.grace_s, args.seed)
        faults = Faults(stack, workers, feedback, args.down_s)
        seconds = args.minutes * 60 / len(SCHEDULE)
        began = time.monotonic()
        for name, fault in SCHEDULE:
            phase = Tally(name)
            print(f"[{time.monotonic() - began:5.0f}s] phase: {name}", flush=True)
            await soak.run_phase(phase, seconds, getattr(faults, fault) if fault else None)
            print(f"[{time.monotonic() - began:5.0f}s]   sent {phase.sent}, answered {len(phase.latencies)}, "
                  f"failed {sum(phase.errors.values())}, lost {phase.lost}", flush=True)
        print("waiting for requests in flight and the learner to catch up", flush=True)
        await soak.drain()
        totals = await settle(soak, stack, args.settle_s)
        await soak.channel.close()
        return {"minutes": args.minutes, "rate": args.rate, "timeout_ms": args.timeout_ms,
                "phases": [phase_row(p) for p in soak.phases], "totals": totals,
                "lost": sum(p.lost for p in soak.phases)}
    finally:
        for p in reversed(procs):
            p.stop()


def main(argv=None) -> None:
    setup_logging()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0, help="of traffic, split evenly over the phases")
    p.add_argument("--rate", type=float, default=5.0, help="Route requests per second (open loop)")
    p.add_argument("--timeout-ms", type=int, default=5000, help="each request's deadline")
    p.add_argument("--grace-s", type=float, default=10.0, help="past the deadline, no reply at all is lost")
    p.add_argument("--down-s", type=float, default=5.0, help="how long a hurt process stays down")
    p.add_argument("--settle-s", type=float, default=300.0, help="at most this long for the learner to catch up")
    p.add_argument("--data", type=Path, default=BUNDLED, help="routing data set of the replay experts")
    p.add_argument("--dir", type=Path, help="stack data and logs (default: a temporary folder)")
    p.add_argument("--json", type=Path, help="write the report here too")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    if args.minutes <= 0 or args.rate <= 0:
        raise SystemExit("error: --minutes and --rate must be > 0")
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        workdir = args.dir or Path(tmp)
        with LocalStack(workdir / "stack", kafka_bootstrap="", redis_url="") as stack:
            report = asyncio.run(soak_run(args, stack, workdir))
    t = report["totals"]
    ok = report["lost"] == 0 and t["ratings_rewarded"] == t["ratings_accepted"] and t["learned"] == t["rewards"] \
        and t["rating_gave_up"] == 0
    report["ok"] = ok
    print(table(report["phases"], t))
    print("OK: nothing lost, every rating learned once" if ok else "FAILED: see the table")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
