"""Shadow policies, promotion and its rollback against real Kafka and Redis.

A router serves `random` with two shadows: `sharp` (LinUCB) and `trivia_only` (always
triviabot). On the two-kind problem each kind has one right expert (quality 0.9, the
other 0.1), so sharp learns to be right and trivia_only is right half of the time,
below random's share. Decisions are rated; the feedback app's learners teach all three.
Then promote refuses trivia_only (with its estimate and interval), promotes sharp, the
router serves sharp within its poll, and `rollback --promotion` serves random again;
every step is an AuditEvent on router.audit.
"""
from __future__ import annotations

import asyncio
import json

import grpc
import pytest

from bandit.policies import make_policy
from common.codec import decode
from common.experts import ExpertCatalog
from common.redis_client import connect
from common.settings import FeedbackSettings, PolicySettings, RouterSettings
from common.snapshots import SnapshotStore
from feedback import rollback
from simulations import promote
from feedback.app import FeedbackApp
from proto import events_pb2, router_pb2, router_pb2_grpc
from router_svc.app import RouterApp
from stack.experts_file import write_catalog
from tests.helpers import bounded, eventually, read_to_end

GOOD = {"math": "mathbot", "trivia": "triviabot"}
SHADOWS = {"sharp": {"policy": "linucb"}, "trivia_only": {"policy": "fixed", "params": {"expert": "triviabot"}}}


@pytest.fixture
async def shadowed(stack, prefix, embedder, two_kind_data, tmp_path):
    replay = {"backend": "replay", "options": {"data": str(two_kind_data)}}
    catalog = ExpertCatalog.from_file(write_catalog(tmp_path / "experts.toml", {
        "mathbot": {**replay, "premium": True, "price_per_call": 0.001},
        "triviabot": {**replay, "price_per_call": 0.001}}))
    common = dict(kafka_bootstrap=stack.kafka_bootstrap, redis_url=stack.redis_url, topic_prefix=prefix,
                  policy="random", shadow_policies=SHADOWS)
    feedback = await FeedbackApp(FeedbackSettings(**common, app_id=f"{prefix}feedback", unknown_grace_s=2,
                                                  learner_flush_s=0.2, sweep_interval_s=1)).start()
    router = await RouterApp(RouterSettings(**common, port=0, seed=3, snapshot_poll_s=0.2), catalog,
                             embedder=embedder).start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{router.port}")
    yield router, feedback, router_pb2_grpc.RouterStub(channel), PolicySettings(**common)
    await bounded(channel.close(), 30, "closing the channel")
    await bounded(router.stop(grace=1), 60, "stopping the router")
    await bounded(feedback.stop(), 60, "stopping the feedback app")


async def decide_and_rate(stub, queries: list[tuple[str, str]], concurrency: int = 8) -> list[router_pb2.DecideResponse]:
    gate = asyncio.Semaphore(concurrency)

    async def one(kind: str, query: str):
        async with gate:
            d = await stub.Decide(router_pb2.DecideRequest(query=query))
            await stub.Feedback(router_pb2.FeedbackRequest(
                decision_id=d.decision_id, quality=0.9 if d.expert == GOOD[kind] else 0.1, cost=0.0))
            return d

    return await asyncio.gather(*(one(k, q) for k, q in queries))


async def test_shadows_are_logged_and_learn_then_promote_judges_and_rollback_undoes(
        shadowed, stack, prompts, monkeypatch, capsys):
    router, feedback, stub, s = shadowed
    queries = [(k, q) for i in range(160) for k, q in (("math", prompts["math"][i]), ("trivia", prompts["trivia"][i]))]
    decided = await decide_and_rate(stub, queries)

    decisions = await read_to_end(stack.kafka_bootstrap, s.decisions_topic,
                                  decode=lambda v: decode(v, events_pb2.DecisionEvent))
    assert len(decisions) == len(decided)
    ev = decisions[-1]
    assert ev.policy_name == "random" and set(ev.shadows) == {"sharp", "trivia_only"}
    assert ev.shadows["trivia_only"].expert == "triviabot"
    assert ev.shadows["trivia_only"].probabilities == pytest.approx({"triviabot": 1.0, "mathbot": 0.0})
    assert sum(ev.shadows["sharp"].probabilities.values()) == pytest.approx(1.0)

    # Every policy learns from the same rewards, each in its own Redis namespace: the shadow's
    # published snapshot comes to count every rated decision, whichever expert served it (a
    # learner publishes after its batch, so an earlier version may count fewer).
    seen: dict = {}

    async def learned() -> bool:
        rewards = await read_to_end(stack.kafka_bootstrap, s.rewards_topic)
        versions = [await c.learner.store.current_version() for c in feedback.learners.values()]
        redis = connect(stack.redis_url)
        try:
            sharp = make_policy("linucb", len(ev.context), {})
            sharp.load_parts((await SnapshotStore(redis, s.redis_prefix, "sharp").load()).parts)
        finally:
            await redis.aclose()
        seen.update(rewards=len(rewards), versions=versions, sharp_counts=sharp.counts)
        return len(rewards) >= len(decided) and all(versions) and sum(sharp.counts.values()) == len(decided)
    try:
        await eventually(learned, timeout=60, interval=1)
    except AssertionError:
        raise AssertionError(f"the shadow never learned every rated decision ({len(decided)}): {seen}") from None

    worse = await promote.promote(s, "trivia_only", min_decisions=200)
    with capsys.disabled():
        print(f"\ntrivia_only: {worse.reason}")
    assert not worse.promote
    assert "DR estimate" in worse.reason and "interval [" in worse.reason and "does not beat" in worse.reason
    assert worse.figures["candidate_lower"] <= worse.figures["serving_value"]
    assert worse.figures["candidate_dr"] == pytest.approx(0.5, abs=0.1)       # right on trivia only

    monkeypatch.setenv("BR_KAFKA_BOOTSTRAP", stack.kafka_bootstrap)
    monkeypatch.setenv("BR_REDIS_URL", stack.redis_url)
    monkeypatch.setenv("BR_TOPIC_PREFIX", s.topic_prefix)
    monkeypatch.setenv("BR_POLICY", "random")
    monkeypatch.setenv("BR_SHADOW_POLICIES", json.dumps(SHADOWS))
    with pytest.raises(SystemExit) as refused:             # the command line: refuses with exit status 1
        await asyncio.to_thread(promote.main, ["--candidate", "trivia_only", "--dry-run"])
    assert refused.value.code == 1 and "refused: 'trivia_only': DR estimate" in capsys.readouterr().out

    better = await promote.promote(s, "sharp", min_decisions=200)
    assert better.promote, better.reason
    with capsys.disabled():
        print(f"sharp: {better.reason}")
    assert better.figures["candidate_lower"] > better.figures["serving_value"] > 0.35
    await eventually(lambda: router.live.name == "sharp", timeout=10)
    after = await stub.Decide(router_pb2.DecideRequest(query=prompts["math"][200]))
    decisions = await read_to_end(stack.kafka_bootstrap, s.decisions_topic,
                                  decode=lambda v: decode(v, events_pb2.DecisionEvent))
    last = next(d for d in decisions if d.decision_id == after.decision_id)
    assert last.policy_name == "sharp" and set(last.shadows) == {"random", "trivia_only"}

    await asyncio.to_thread(rollback.main, ["--promotion"])
    assert "now serving policy random (was sharp)" in capsys.readouterr().out
    await eventually(lambda: router.live.name == "random", timeout=10)

    audit = await read_to_end(stack.kafka_bootstrap, s.audit_topic, decode=lambda v: decode(v, events_pb2.AuditEvent))
    assert [(a.action, a.from_policy, a.to_policy) for a in audit] == [
        ("promote_refused", "random", "trivia_only"), ("promote", "random", "sharp"),
        ("rollback", "sharp", "random")]
    assert audit[1].figures["candidate_lower"] == pytest.approx(better.figures["candidate_lower"])
    assert audit[0].reason == worse.reason and audit[1].to_version > 0 and "@" in audit[2].actor
