"""The load bench's accounting against a stand-in router (in this process): answers are
timed, refusals counted by status, silence past the deadline counted as lost, and the
open loop keeps its rate whatever the latency."""
from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import grpc

from bench.load import Connections, closed_loop, decide, open_loop
from proto import router_pb2, router_pb2_grpc


class StandIn(router_pb2_grpc.RouterServicer):
    """Decide: 'slow' answers after 0.2 s, 'busy' is refused, 'mute' never answers."""

    async def Decide(self, request, context):
        if request.query == "busy":
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "at capacity")
        if request.query == "mute":
            await asyncio.sleep(3600)
        await asyncio.sleep(0.2 if request.query == "slow" else 0.0)
        return router_pb2.DecideResponse(decision_id=str(uuid.uuid4()), expert="a")

    async def Route(self, request, context):
        await asyncio.sleep(0.5)
        return router_pb2.RouteResponse(decision_id=str(uuid.uuid4()), expert="a")


@contextlib.asynccontextmanager
async def stand_in(connections: int):
    """The stand-in router on a free port, and `connections` to it."""
    server = grpc.aio.server()
    router_pb2_grpc.add_RouterServicer_to_server(StandIn(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    conns = Connections(port, connections)
    try:
        yield conns
    finally:
        await conns.close()
        await server.stop(0)


async def test_closed_and_open_loops_count_answers_refusals_and_losses(monkeypatch):
    monkeypatch.setattr("bench.load.GRACE_S", 0.2)
    async with stand_in(2) as conns:
        run = await closed_loop("d", decide, conns, ["fast"] * 6 + ["slow"] * 2 + ["busy", "mute"], 4, 0.3)
        s = run.summary()
        assert (s["ok"], s["errors"], s["lost"]) == (8, {"RESOURCE_EXHAUSTED": 1}, 1)
        assert s["p99_ms"] >= 190 and len(set(run.ids)) == 8 and s["throughput_qps"] > 0
        began = time.monotonic()
        ran = await open_loop("r", conns, ["q"] * 10, rate=20, timeout_s=2)
        # 10 requests at 20/s are all sent within 0.5 s although each takes 0.5 s: open loop
        assert ran.summary()["ok"] == 10 and time.monotonic() - began < 1.6


async def test_each_call_goes_to_the_connection_with_the_fewest_outstanding():
    """The two-router run's balancer: while a slow call holds one connection, the others
    take the calls that follow (a busier router gets fewer)."""
    async with stand_in(3) as conns:
        slow = asyncio.create_task(conns.call("Decide", router_pb2.DecideRequest(query="slow"), 5))
        await asyncio.sleep(0)
        busy = conns.outstanding.index(1)
        for _ in range(6):
            await conns.call("Decide", router_pb2.DecideRequest(query="fast"), 5)
        await slow
        others = [c for i, c in enumerate(conns.calls) if i != busy]
        assert conns.calls[busy] == 1 and sum(others) == 6 and min(others) >= 2 and conns.outstanding == [0, 0, 0]


def test_the_cpu_meter_tells_a_busy_process_from_an_idle_one():
    import subprocess
    import sys

    from bench.cpu import CpuMeter, cpu_seconds

    busy = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 5\nwhile time.time() < end: pass"])
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        time.sleep(0.3)                       # past the interpreters' start-up
        meter = CpuMeter({"busy": busy.pid, "idle": idle.pid, "gone": 2 ** 22 + 7})
        time.sleep(1.5)
        used = meter.used()
    finally:
        busy.kill(), idle.kill()
        busy.wait(), idle.wait()
    assert used["busy"] > 0.5 and used["idle"] < 0.05, used     # a spinning loop holds about one core
    assert "gone" not in used and used["total"] == round(used["busy"] + used["idle"], 3)
    assert cpu_seconds(2 ** 22 + 7) is None


def test_the_floor_is_the_faster_of_its_two_measurements():
    """The routers' backend alone, before the stack and after it: whatever else ran on the
    machine only slowed it, so each figure is taken at its better; both stay in the report."""
    from bench.floor import faster_floor

    before = {"backend": "onnx-int8", "batch1_p50_ms": 3.7, "batch32_qps": 151.0, "batch32_cpu_ms": 9.0,
              "throughput_over_torch": 3.1}
    after = {"backend": "onnx-int8", "batch1_p50_ms": 3.9, "batch32_qps": 216.0, "batch32_cpu_ms": 8.5}
    floor = faster_floor(before, after)
    assert (floor["batch1_p50_ms"], floor["batch32_qps"], floor["batch32_cpu_ms"]) == (3.7, 216.0, 8.5)
    assert floor["measured"][0]["batch32_qps"] == 151.0 and floor["measured"][1]["batch1_p50_ms"] == 3.9
    assert floor["throughput_over_torch"] == 3.1              # the side-by-side ratio stays the first run's
    missing = {"backend": "onnx-int8", "unavailable": "ImportError: onnxruntime"}
    assert faster_floor(missing, missing) is missing
