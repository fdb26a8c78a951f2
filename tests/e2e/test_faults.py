"""Restarts of the broker, of Redis, of the feedback app and of the worker, under rated traffic.

The stack here is the test's own (so it can be killed), with the services as processes.
After each fault the same processes carry on: requests get answers again, and every
rated decision is learned, and every rewarded decision exactly once (the policy's update
count equals the number of distinct decisions on the rewards topic: rated ones, plus the
ones whose expert failed while the worker was down, which are learned as failures).
"""
from __future__ import annotations

import asyncio
import json
import time

import grpc
import pytest
from common.redis_client import connect

from common.snapshots import SnapshotStore
from common.codec import decode
from proto import events_pb2, router_pb2, router_pb2_grpc
from common.dataset import RoutingDataset
from stack.experts_file import write_catalog
from stack.local import LocalStack, ServiceProcess
from tests.helpers import eventually, read_to_end


@pytest.fixture
def own_stack(tmp_path):
    s = LocalStack(tmp_path / "stack", kafka_bootstrap="", redis_url="").start()
    yield s
    s.stop()


class Traffic:
    """Rated requests through one router; retries while the stack recovers from a fault."""

    def __init__(self, port: int, rows):
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self.stub = router_pb2_grpc.RouterStub(self.channel)
        self.rows = iter(rows)
        self.rated_ids: list[str] = []

    @property
    def rated(self) -> int:
        return len(self.rated_ids)

    async def send(self, n: int, patience_s: float = 90.0) -> None:
        for _ in range(n):
            row = next(self.rows)
            deadline = time.monotonic() + patience_s
            resp = await self._until_ok(deadline, lambda: self.stub.Route(router_pb2.RouteRequest(
                query=row.prompt, timeout_ms=5000,
                options=router_pb2.RouteOptions(metadata={"item_id": row.id})), timeout=10))
            # The rating is retried for the same decision: a retry after a write that did land
            # is a second rating of it, which the join dead-letters, so it is learned once.
            await self._until_ok(deadline, lambda: self.stub.Feedback(router_pb2.FeedbackRequest(
                decision_id=resp.decision_id, quality=row.outcomes[resp.expert].quality), timeout=10))
            self.rated_ids.append(resp.decision_id)

    @staticmethod
    async def _until_ok(deadline: float, call):
        while True:
            try:
                return await call()
            except grpc.aio.AioRpcError as exc:
                # During an outage: a Route that failed gets no rating and is not counted.
                assert exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED), exc
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)

    async def learned(self) -> int:
        info = await self.stub.ListExperts(router_pb2.ListExpertsRequest())
        return sum(e.updates for e in info.experts)


async def test_services_survive_broker_redis_feedback_and_worker_restarts(own_stack, two_kind_data, tmp_path):
    stack = own_stack
    replay = {"backend": "replay", "options": {"data": str(two_kind_data)}}
    catalog = write_catalog(tmp_path / "experts.toml", {"mathbot": {**replay, "premium": True},
                                                        "triviabot": replay})
    env = stack.env(BR_EXPERTS_FILE=catalog, BR_PORT=0, BR_SEED=3, BR_LEARNER_FLUSH_S=0.2,
                    BR_POLICY="linucb", BR_POLICY_PARAMS=json.dumps({"project_to": 32}))
    feedback = ServiceProcess("feedback.main", env, tmp_path / "feedback.log")
    worker = ServiceProcess("workers.main", env, tmp_path / "worker.log")
    procs = [feedback.spawn(), worker.spawn(), ServiceProcess("router_svc.main", env, tmp_path / "router.log").spawn()]
    r = connect(stack.redis_url)
    store = SnapshotStore(r, "br:", "linucb")
    try:
        for p in procs:
            p.wait_ready(180)
        traffic = Traffic(int(procs[-1].field("port")), RoutingDataset.load(two_kind_data).rows)

        seen: dict[str, int] = {}

        async def learned_all():
            rewarded = {r.decision_id for r in await read_to_end(
                stack.kafka_bootstrap, "router.rewards", decode=lambda v: decode(v, events_pb2.RewardEvent))}
            seen["rated_not_rewarded"] = len(set(traffic.rated_ids) - rewarded)
            seen["learned"], seen["rewarded"], seen["rated"] = await traffic.learned(), len(rewarded), traffic.rated
            seen["redis_version"] = await store.current_version()
            print("learned_all:", seen)   # shown when the test fails
            return seen["rated_not_rewarded"] == 0 and seen["learned"] == seen["rewarded"]

        await traffic.send(30)
        await eventually(learned_all, timeout=60)
        v1 = await store.current_version()

        # 1. The broker dies (SIGKILL) and comes back on the same ports with its data.
        stack.kafka.kill()
        with pytest.raises(grpc.aio.AioRpcError) as err:   # bounded by the deadline, never hangs
            await traffic.stub.Route(router_pb2.RouteRequest(query="x" * 10, timeout_ms=2000), timeout=15)
        assert err.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
        stack.kafka.start()
        await traffic.send(30)
        await eventually(learned_all, timeout=120)
        v2 = await store.current_version()
        assert v2 > v1

        # 2. Redis stops and restarts (append-only file): routing goes on meanwhile, learning resumes.
        stack.redis.stop()
        await traffic.send(10)
        stack.redis.start()
        await traffic.send(10)
        await eventually(learned_all, timeout=120)
        assert await store.current_version() > v2

        # 3. The feedback app is killed and restarted: its join state comes back from the changelog.
        feedback.proc.kill()
        feedback.proc.wait()
        await traffic.send(10)                      # rated while no feedback app runs
        feedback.spawn().wait_ready(180)
        await traffic.send(10)
        await eventually(learned_all, timeout=120)

        # 4. The worker is killed under traffic and restarted: requests in flight time out (the
        # caller retries), the new worker takes over the consumer groups, nothing is learned twice.
        sending = asyncio.create_task(traffic.send(20))
        await eventually(lambda: traffic.rated >= 105, timeout=60)
        worker.proc.kill()
        worker.proc.wait()
        await asyncio.to_thread(worker.spawn().wait_ready, 180)
        await sending
        await eventually(learned_all, timeout=120)
        assert traffic.rated == 120
        await traffic.channel.close()
    finally:
        await r.aclose()
        for p in procs:
            p.stop()
        for p in procs:   # shown by pytest only when the test failed
            print(f"----- {p.name} log (tail) -----\n{p.log_tail(3000)}")
