"""The whole loop through the real processes, as a backend team runs it.

feedback app, worker process and two router replicas as child processes, against the
session's real Kafka broker and Redis. Rated traffic goes through replica A; replica B,
which never sees a request until the end, must have picked up the learned policy.
"""
from __future__ import annotations

import asyncio
import json
import uuid

import grpc
import pytest
from common.redis_client import connect

from common.codec import decode
from common.kafka import make_producer
from common.snapshots import SnapshotStore
from proto import events_pb2, router_pb2, router_pb2_grpc
from common.dataset import RoutingDataset
from stack.experts_file import write_catalog
from stack.local import ServiceProcess
from tests.helpers import eventually, prometheus, prometheus_api, read_topic, running, scrape

TRAIN_EACH = 150


@pytest.fixture
def services(stack, prefix, two_kind_data, tmp_path):
    replay = {"backend": "replay", "options": {"data": str(two_kind_data)}}
    catalog = write_catalog(tmp_path / "experts.toml", {"mathbot": {**replay, "premium": True},
                                                        "triviabot": replay})
    env = stack.env(BR_EXPERTS_FILE=catalog, BR_TOPIC_PREFIX=prefix, BR_APP_ID=f"{prefix}feedback",
                    BR_PORT=0, BR_UNKNOWN_GRACE_S=2, BR_METRICS_PORT=0, BR_SWEEP_INTERVAL_S=1, BR_LEARNER_FLUSH_S=0.2,
                    BR_POLICY="linucb", BR_POLICY_PARAMS=json.dumps({"alpha": 0.3, "epsilon": 0.05, "project_to": 64}))
    procs = {"feedback": ServiceProcess("feedback.main", env, tmp_path / "feedback.log"),
             "worker": ServiceProcess("workers.main", env, tmp_path / "worker.log"),
             "router_a": ServiceProcess("router_svc.main", {**env, "BR_SEED": "1"}, tmp_path / "router_a.log"),
             "router_b": ServiceProcess("router_svc.main", {**env, "BR_SEED": "2"}, tmp_path / "router_b.log")}
    with running(procs):
        yield procs, env


async def test_router_learns_which_expert_fits_each_kind(services, stack, prefix, two_kind_data, tmp_path):
    procs, _ = services
    rows = RoutingDataset.load(two_kind_data).rows
    by_kind = {k: [r for r in rows if r.task == k] for k in ("math", "trivia")}
    train = [r for pair in zip(by_kind["math"][:TRAIN_EACH], by_kind["trivia"][:TRAIN_EACH]) for r in pair]
    held_out = {k: v[TRAIN_EACH:TRAIN_EACH + 40] for k, v in by_kind.items()}
    port_a, port_b = (int(procs[n].field("port")) for n in ("router_a", "router_b"))

    # Feedback that cannot join, and events nobody can decode: dead letters, not crashes.
    unknown_id = str(uuid.uuid4())
    producer = make_producer(stack.kafka_bootstrap)
    await producer.start()
    await producer.send_and_wait(f"{prefix}feedback.ratings", b"\x0a\xff\xff garbage")
    await producer.send_and_wait(f"{prefix}feedback.ratings", b'{"decisionId": 7, "qualty": 1}')
    await producer.send_and_wait(f"{prefix}router.decisions", b"\x07\x07")

    answers: dict[str, int] = {}
    json_rated: list[str] = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port_a}") as ch_a:
        a = router_pb2_grpc.RouterStub(ch_a)
        await a.Feedback(router_pb2.FeedbackRequest(decision_id=unknown_id, quality=1.0))
        sem = asyncio.Semaphore(8)

        async def one(row) -> None:
            async with sem:
                # A generous deadline: this test is about learning, and CI machines are slow.
                resp = await a.Route(router_pb2.RouteRequest(
                    query=row.prompt, timeout_ms=30_000,
                    options=router_pb2.RouteOptions(metadata={"item_id": row.id})), timeout=40)
                answers[resp.decision_id] = answers.get(resp.decision_id, 0) + 1
                quality = row.outcomes[resp.expert].quality
                if len(answers) % 4 == 0:      # a product team's producer: plain JSON, as kcat would send
                    await producer.send_and_wait(f"{prefix}feedback.ratings", json.dumps({
                        "ratingId": str(uuid.uuid4()), "decisionId": resp.decision_id, "quality": quality,
                        "source": "app"}).encode(), key=resp.decision_id.encode())
                    json_rated.append(resp.decision_id)
                else:
                    await a.Feedback(router_pb2.FeedbackRequest(
                        decision_id=resp.decision_id, quality=quality, source="benchmark"))

        # The first half, then the rest, so the second half is routed by a learned policy.
        await asyncio.gather(*(one(r) for r in train[:100]))
        await asyncio.gather(*(one(r) for r in train[100:]))
    await producer.stop()
    assert len(answers) == len(train) and set(answers.values()) == {1} and len(json_rated) >= 50

    # Every rated decision is learned exactly once, and replica B serves that version.
    r = connect(stack.redis_url)
    store = SnapshotStore(r, f"br:{prefix}", "linucb")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port_b}") as ch_b:
        b = router_pb2_grpc.RouterStub(ch_b)

        async def b_caught_up():
            info = await b.ListExperts(router_pb2.ListExpertsRequest())
            learned = sum(e.updates for e in info.experts)
            return learned == len(train) and info.policy_version == await store.current_version() and info

        info = await eventually(b_caught_up, timeout=60)
        assert info.policy_version > 1
        right, gaps = {"math": 0, "trivia": 0}, []
        for kind, good, bad in (("math", "mathbot", "triviabot"), ("trivia", "triviabot", "mathbot")):
            for row in held_out[kind]:
                d = await b.Decide(router_pb2.DecideRequest(query=row.prompt))
                right[kind] += d.expert == good
                gaps.append(d.scores[good].estimated_quality - d.scores[bad].estimated_quality)
    assert right["math"] >= 34 and right["trivia"] >= 34, right          # of 40 each (epsilon is 0.05)
    # A clear preference: the right expert's estimate is higher nearly everywhere, by a wide mean margin.
    assert sum(g > 0 for g in gaps) >= 76 and sum(gaps) / len(gaps) > 0.3, gaps

    # Exactly one chosen-expert result per decision on router.results.
    results = await read_topic(stack.kafka_bootstrap, f"{prefix}router.results",
                               lambda ms: len(ms) >= len(train),
                               decode=lambda v: decode(v, events_pb2.ExpertResult))
    firsts = [m.decision_id for m in results if m.attempt == 0]
    assert len(firsts) == len(set(firsts)) == len(train)

    letters = await read_topic(stack.kafka_bootstrap, f"{prefix}dead.letters", lambda ms: len(ms) >= 4,
                               decode=lambda v: decode(v, events_pb2.DeadLetter))
    reasons = {m.source_topic: m.reason for m in letters}
    assert "unknown decision_id" in next(m.reason for m in letters if m.decision_id == unknown_id)
    assert reasons[f"{prefix}router.decisions"]
    assert reasons[f"{prefix}feedback.ratings"]
    assert any("undecodable Rating JSON" in m.reason for m in letters)      # JSON, but not a Rating

    # Every process reports the same story on its Prometheus endpoint.
    router_m, worker_m, feedback_m = (int(procs[n].field("metrics")) for n in ("router_a", "worker", "feedback"))
    assert await scrape(router_m, "router_decisions_total") >= len(train)
    assert await scrape(worker_m, "worker_calls_total", outcome="ok") >= len(train)
    assert await scrape(worker_m, "worker_call_seconds_count") == await scrape(worker_m, "worker_calls_total")
    assert await scrape(worker_m, "worker_cost_total") > 0
    assert await scrape(feedback_m, "feedback_learned_total") == len(train)
    assert await scrape(feedback_m, "feedback_snapshot_version") == await store.current_version()
    await r.aclose()
    assert await scrape(feedback_m, "feedback_dead_letters_total") >= 4

    # A real Prometheus scrapes every process (as compose/prometheus.yml does in compose).
    ports = {n: int(procs[n].field("metrics")) for n in procs}
    with prometheus({"router": [ports["router_a"], ports["router_b"]], "worker": [ports["worker"]],
                     "feedback": [ports["feedback"]]}, tmp_path / "prometheus") as prom:
        async def all_up():
            targets = await prometheus_api(prom, "targets")
            return targets and len(targets["activeTargets"]) == 4 \
                and all(t["health"] == "up" for t in targets["activeTargets"])

        await eventually(all_up, timeout=60, interval=0.5)

        async def decisions():
            data = await prometheus_api(prom, "query", query="sum(router_decisions_total)")
            return data and data["result"] and float(data["result"][0]["value"][1])

        assert await eventually(decisions, timeout=30, interval=0.5) >= len(train)
    assert all(p.proc.poll() is None for p in procs.values()), "a service died"
