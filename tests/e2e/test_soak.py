"""The soak bench: a short run through every fault must lose nothing, and its accounting
must see a request the router never answers as lost."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import grpc

from bench.calls import Tally
from bench.soak import Soak
from proto import router_pb2, router_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]


class Silent(router_pb2_grpc.RouterServicer):
    """A router that never answers Route, and refuses the second kind of query at once."""

    async def Route(self, request, context):
        if request.query == "refuse":
            await context.abort(grpc.StatusCode.UNAVAILABLE, "event log unavailable")
        await asyncio.sleep(3600)


async def test_no_reply_by_deadline_plus_grace_is_lost_a_status_is_failed():
    server = grpc.aio.server()
    router_pb2_grpc.add_RouterServicer_to_server(Silent(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        row = type("Row", (), {"prompt": "hello", "outcomes": {}})
        refused = type("Row", (), {"prompt": "refuse", "outcomes": {}})
        soak = Soak(port, [row], rate=1, timeout_ms=200, grace_s=0.3, seed=0)
        phase = Tally("p")
        await asyncio.gather(soak.route(phase, row), soak.route(phase, refused))
        assert (phase.sent, len(phase.latencies), phase.lost, dict(phase.errors)) == (2, 0, 1, {"UNAVAILABLE": 1})
        await soak.channel.close()
    finally:
        await server.stop(0)


def test_a_short_soak_through_every_fault_loses_nothing_and_learns_every_rating_once(tmp_path):
    out = tmp_path / "soak.json"
    proc = subprocess.run([sys.executable, "-m", "bench.soak", "--minutes", "0.6", "--rate", "3", "--down-s", "2",
                           "--dir", str(tmp_path / "soak"), "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    print(proc.stdout[-3000:], proc.stderr[-3000:])
    assert proc.returncode == 0
    report = json.loads(out.read_text())
    assert [p["phase"] for p in report["phases"]] == ["steady", "worker SIGKILL", "broker SIGKILL", "redis restart",
                                                      "feedback SIGKILL", "steady, after"]
    assert all(p["sent"] >= 15 for p in report["phases"]) and report["lost"] == 0
    t = report["totals"]
    assert t["ratings_accepted"] > 50 and t["ratings_rewarded"] == t["ratings_accepted"]
    assert t["learned"] == t["rewards"] >= t["ratings_accepted"]
    assert report["phases"][-1]["answered"] == report["phases"][-1]["sent"]       # recovered by the end
    assert "| broker SIGKILL |" in proc.stdout and "OK: nothing lost" in proc.stdout
