"""Versioned snapshots in a real Redis: shards, rollback, trimming, dedupe marks."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest
from common.redis_client import connect
from redis.exceptions import ConnectionError as RedisConnectionError

from common.codec import decode
from common.snapshots import SnapshotStore
from feedback.learner import Learner
from proto import events_pb2
from bandit.policies import make_policy
from tests.helpers import read_to_end


@pytest.fixture
async def store(stack, prefix):
    r = connect(stack.redis_url)
    yield SnapshotStore(r, f"br:{prefix}", "linucb", keep=4)
    await r.aclose()


async def test_shards_publish_their_own_parts_without_overwriting(store):
    v1 = await store.publish({"a": b"A1", "__meta__": b"M"})
    v2 = await store.publish({"b": b"B1"})
    v3 = await store.publish({"a": b"A2"})
    assert (v1, v2, v3) == (1, 2, 3)
    snap = await store.load()
    assert snap.parts == {"a": b"A2", "b": b"B1", "__meta__": b"M"}
    assert snap.manifest == {"a": 3, "b": 2, "__meta__": 1}
    again = await store.load(have=snap.manifest)
    assert again.parts == {}   # nothing changed: nothing fetched


async def test_rollback_and_trim_keep_what_retained_versions_use(store):
    await store.publish({"a": b"A1", "b": b"B1"})
    for i in range(2, 8):
        await store.publish({"a": f"A{i}".encode()})
    assert await store.history() == [7, 6, 5, 4]
    snap = await store.load()
    assert snap.parts["b"] == b"B1"           # written at v1, still referenced: not trimmed
    await store.rollback(5)
    assert (await store.load()).parts["a"] == b"A5"
    with pytest.raises(KeyError, match="not retained"):
        await store.rollback(2)
    v = await store.publish({"b": b"B2"})     # a new version builds on the rolled-back one
    snap = await store.load()
    assert v == 8 and snap.parts == {"a": b"A5", "b": b"B2"}


def linucb4():
    return make_policy("linucb", 4, {"project_to": 0})


def reward(i: int, expert: str, x=(1, 0, 0, 1), quality=1.0) -> events_pb2.RewardEvent:
    return events_pb2.RewardEvent(reward_id=f"r{i}", decision_id=f"r{i}", expert=expert, context=list(x),
                                  quality=quality, cost=0.0)


async def test_learner_skips_rewards_it_already_published(store):
    learner = Learner(linucb4, store, seen_ttl_s=60)
    policy = learner.policy
    reward = events_pb2.RewardEvent(reward_id="r1", decision_id="r1", expert="a", context=[1, 0, 0, 1],
                                    quality=1.0, cost=0.0)
    assert await learner.apply([reward, reward]) == 1
    assert await learner.apply([reward]) == 0            # redelivered after publish: skipped
    assert policy.counts == {"a": 1} and learner.skipped == 2
    # A fresh learner (a restart, or a partition moving) starts from Redis, not from scratch.
    other = Learner(linucb4, store, seen_ttl_s=60)
    r2 = events_pb2.RewardEvent(reward_id="r2", decision_id="r2", expert="a", context=[0, 1, 0, 1], quality=0.5)
    await other.apply([r2])
    assert other.policy.counts["a"] == 2
    np.testing.assert_allclose(other.policy.arms["a"].b_q, [1.0, 0.5, 0.0, 1.5, 1.5])


async def test_publish_over_a_part_that_changed_since_it_was_read_writes_nothing(store):
    from common.snapshots import SnapshotConflict

    await store.publish({"m": b"M1"}, expect={"m": 0})              # first write: nothing there to have read
    with pytest.raises(SnapshotConflict, match="changed in Redis"):
        await store.publish({"m": b"stale"}, ["r1"], expect={"m": 0})
    with pytest.raises(SnapshotConflict):
        await store.publish({"m": b"stale"}, ["r1"], offsets={"t:0": 9}, expect={"m": 7})
    assert await store.current_version() == 1 and (await store.load()).parts == {"m": b"M1"}
    assert await store.unseen(["r1"]) == [True] and await store.offsets() == {}
    assert await store.publish({"m": b"M2"}, expect={"m": 1}) == 2


@pytest.mark.parametrize("name", ["linucb", "lints", "vw", "neural_linear", "grouped_ts", "epsilon_greedy"])
async def test_router_copy_from_redis_chooses_like_the_learner(store, name):
    params = {"neural_linear": {"train_every": 20}, "grouped_ts": {"clusters": 3, "init": 20}}.get(name, {})
    learner = Learner(lambda: make_policy(name, 6, params, seed=1), store, seen_ttl_s=60)
    rng = np.random.default_rng(0)
    rewards = [events_pb2.RewardEvent(reward_id=f"r{i}", expert=f"e{i % 3}", context=rng.standard_normal(6).tolist(),
                                      quality=float(rng.uniform()), cost=0.1) for i in range(50)]
    for i in range(0, 50, 10):
        await learner.apply(rewards[i:i + 10])
    router = make_policy(name, 6, params, seed=5)
    snap = await store.load()
    router.load_parts(snap.parts)
    learner.policy.rng, router.rng = np.random.default_rng(9), np.random.default_rng(9)
    xs = rng.standard_normal((20, 6))
    assert [learner.policy.select(x, ["e0", "e1", "e2"]).probabilities for x in xs] == \
           [router.select(x, ["e0", "e1", "e2"]).probabilities for x in xs]
    assert router.counts == {"e0": 17, "e1": 17, "e2": 16}


async def test_a_restarted_learner_loads_every_arm_it_touches_not_only_the_first(store):
    """The lost-updates bug: after publishing arm a, a restarted learner treated its copy as
    current and started arm b from the prior, overwriting b's learned state in Redis."""
    first = Learner(linucb4, store, seen_ttl_s=60)
    await first.apply([reward(i, "a") for i in range(3)] + [reward(i, "b") for i in range(3, 8)])
    restarted = Learner(linucb4, store, seen_ttl_s=60)
    await restarted.apply([reward(10, "a")])
    await restarted.apply([reward(11, "b")])
    router = linucb4()
    router.load_parts((await store.load()).parts)
    assert router.counts == {"a": 4, "b": 6}
    np.testing.assert_allclose(router.arms["b"].b_q, [6.0, 0.0, 0.0, 6.0, 6.0])


class FailingOnce(SnapshotStore):
    """The real store, whose next publish fails after the batch was applied in memory (Redis
    dropping the connection at that moment)."""
    fail = False

    async def publish(self, *args, **kw):
        if self.fail:
            self.fail = False
            raise RedisConnectionError("connection reset while publishing")
        return await super().publish(*args, **kw)


async def test_a_batch_retried_after_a_failed_publish_is_learned_once(store):
    flaky = FailingOnce(store.redis, store.key.removesuffix("policy:linucb:"), "linucb")
    learner = Learner(linucb4, flaky, seen_ttl_s=60)
    await learner.apply([reward(1, "a")])
    batch = [reward(2, "a"), reward(3, "a")]
    flaky.fail = True
    with pytest.raises(RedisConnectionError):
        await learner.apply(batch)
    await learner.apply(batch)                            # the consumer's retry of the same batch
    router = linucb4()
    router.load_parts((await store.load()).parts)
    assert router.counts == {"a": 3} and learner.policy.counts == {"a": 3}
    np.testing.assert_allclose(router.arms["a"].b_q, [3.0, 0.0, 0.0, 3.0, 3.0])


async def test_input_offsets_are_stored_with_the_snapshot_and_only_grow(store):
    learner = Learner(linucb4, store, seen_ttl_s=60)
    await learner.apply([reward(1, "a")], {"rewards:0": 5, "rewards:1": 2})
    await learner.apply([reward(1, "a")], {"rewards:1": 9})          # a repeat: nothing to publish
    await store.record_offsets({"rewards:0": 3})                      # older: ignored
    assert await store.offsets() == {"rewards:0": 5, "rewards:1": 9}
    assert await store.current_version() == 1


async def test_rollback_command_serves_an_earlier_version_and_the_learner_builds_on_it(
        stack, prefix, monkeypatch, capsys):
    from feedback import rollback

    r = connect(stack.redis_url)
    store = SnapshotStore(r, f"br:{prefix}", "linucb")
    learner = Learner(linucb4, store, seen_ttl_s=60)
    for i in range(3):                                   # versions 1, 2, 3: a learns 1, 2, 3 rewards
        await learner.apply([reward(i, "a")])
    monkeypatch.setenv("BR_REDIS_URL", stack.redis_url)
    monkeypatch.setenv("BR_KAFKA_BOOTSTRAP", stack.kafka_bootstrap)
    monkeypatch.setenv("BR_TOPIC_PREFIX", prefix)
    monkeypatch.setenv("BR_POLICY", "linucb")
    await asyncio.to_thread(rollback.main, [])
    assert "now serving version 2 (was 3)" in capsys.readouterr().out
    assert await store.current_version() == 2
    with pytest.raises(SystemExit, match=r"version 99 is not retained; retained versions: \[3, 2, 1\]"):
        await asyncio.to_thread(rollback.main, ["--to", "99"])
    await asyncio.to_thread(rollback.main, ["--to", "1"])
    await learner.apply([reward(10, "a")])               # the learner notices and goes on from v1
    router = linucb4()
    router.load_parts((await store.load()).parts)
    assert router.counts == {"a": 2}
    await r.aclose()
    audit = await read_to_end(stack.kafka_bootstrap, f"{prefix}router.audit",
                              decode=lambda v: decode(v, events_pb2.AuditEvent))
    assert [(a.action, a.to_policy, a.from_version, a.to_version) for a in audit] == [
        ("rollback", "linucb", 3, 2), ("rollback", "linucb", 2, 1)]           # the refused --to 99 is not one
    with pytest.raises(SystemExit, match="no promotion is recorded: 'linucb' has served since the start"):
        await asyncio.to_thread(rollback.main, ["--promotion"])


async def test_two_learners_sharing_one_part_lose_no_reward(store):
    """A policy with one shared model (grouped_ts: one part) learned by two learners at once,
    as two feedback replicas would: each publishes only over the version it read, so a
    batch that raced the other's is applied again, never written over it."""
    def shared():
        return make_policy("grouped_ts", 6, {"clusters": 3, "init": 20}, seed=1)

    learners = [Learner(shared, store, seen_ttl_s=60) for _ in range(2)]
    rng = np.random.default_rng(3)

    def batch(shard: int, start: int) -> list[events_pb2.RewardEvent]:
        return [events_pb2.RewardEvent(reward_id=f"s{shard}-{i}", expert=f"e{shard}", quality=float(rng.uniform()),
                                       context=rng.standard_normal(6).tolist(), cost=0.1)
                for i in range(start, start + 5)]

    for start in range(0, 100, 5):                     # both shards' batches in flight together, 20 rounds
        await asyncio.gather(*(learner.apply(batch(k, start)) for k, learner in enumerate(learners)))
    router = shared()
    router.load_parts((await store.load()).parts)
    assert router.counts == {"e0": 100, "e1": 100}
    assert sum(learner.skipped for learner in learners) == 0
