"""A Redis restart under concurrent traffic fails no request: what waits on Redis in the
request path (the workers' answer ledger) gives up within its share of the deadline and
calls the expert anyway, as the README promises. 16 clients with 3 s deadlines, Redis down
for 5 s; the outcomes and latency per phase are printed (`-s`)."""
from __future__ import annotations

import asyncio
import collections
import json
import time

import grpc
import numpy as np
import pytest

from common.dataset import RoutingDataset
from proto import router_pb2, router_pb2_grpc
from stack.experts_file import write_catalog
from stack.local import LocalStack, ServiceProcess
from tests.helpers import running


@pytest.fixture
def own_stack(tmp_path):
    s = LocalStack(tmp_path / "stack", kafka_bootstrap="", redis_url="").start()
    yield s
    s.stop()


async def test_a_redis_restart_under_16_clients_fails_no_route(own_stack, two_kind_data, tmp_path):
    stack = own_stack
    replay = {"backend": "replay", "options": {"data": str(two_kind_data)}}
    catalog = write_catalog(tmp_path / "experts.toml", {"mathbot": {**replay, "premium": True}, "triviabot": replay})
    env = stack.env(BR_EXPERTS_FILE=catalog, BR_PORT=0, BR_SEED=3, BR_POLICY="linucb",
                    BR_POLICY_PARAMS=json.dumps({"project_to": 32}))
    procs = {"feedback": ServiceProcess("feedback.main", env, tmp_path / "feedback.log"),
             "worker": ServiceProcess("workers.main", env, tmp_path / "worker.log"),
             "router": ServiceProcess("router_svc.main", env, tmp_path / "router.log")}
    rows = RoutingDataset.load(two_kind_data).rows
    with running(procs):
        outcomes: dict[str, collections.Counter] = {p: collections.Counter() for p in ("before", "outage", "after")}
        latency: dict[str, list] = {p: [] for p in outcomes}
        phase = "before"
        async with grpc.aio.insecure_channel(f"127.0.0.1:{procs['router'].field('port')}") as channel:
            stub = router_pb2_grpc.RouterStub(channel)
            await asyncio.gather(*(stub.Route(router_pb2.RouteRequest(   # warm up: first batches, metadata
                query=r.prompt, timeout_ms=30_000, options=router_pb2.RouteOptions(metadata={"item_id": r.id})))
                for r in rows[-16:]))

            async def client(k: int) -> None:
                i = k
                while time.monotonic() < stop_at:
                    row = rows[i % len(rows)]
                    i += 16
                    at, began = phase, time.monotonic()
                    try:
                        await stub.Route(router_pb2.RouteRequest(query=row.prompt, timeout_ms=3_000, options=
                                         router_pb2.RouteOptions(metadata={"item_id": row.id})), timeout=10)
                        outcomes[at]["OK"] += 1
                    except grpc.aio.AioRpcError as exc:
                        outcomes[at][exc.code().name] += 1
                    latency[at].append(time.monotonic() - began)

            stop_at = time.monotonic() + 16
            clients = asyncio.gather(*(client(k) for k in range(16)))
            await asyncio.sleep(3)
            phase = "outage"
            await asyncio.to_thread(stack.redis.stop)
            await asyncio.sleep(5)
            await asyncio.to_thread(stack.redis.start)
            phase = "after"
            await clients
        print("\nRoute outcomes by phase:", {p: dict(c) for p, c in outcomes.items()})
        print("latency p50/p99 s by phase:", {p: (round(float(np.percentile(v, 50)), 3), round(float(np.percentile(v, 99)), 3))
                                              for p, v in latency.items() if v})
        assert all(set(c) == {"OK"} for c in outcomes.values()), outcomes
        assert all(c["OK"] > 0 for c in outcomes.values()), outcomes
