"""The router's batched scoring: requests that ask in the same turn of the event loop are
scored in one select_many, each gets its own choice, and one bad request fails alone."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from bandit.policies import make_policy
from router_svc.scoring import BatchedSelect

EXPERTS = ["a", "b", "c"]


class Counting:
    """A policy wrapper that counts its select_many calls and their sizes."""

    def __init__(self, policy):
        self.policy, self.batches = policy, []

    def select_many(self, xs, eligible, weights, prices):
        self.batches.append(len(xs))
        return self.policy.select_many(xs, eligible, weights, prices)

    def select(self, *args):
        return self.policy.select(*args)


async def test_requests_asking_in_the_same_turn_are_scored_in_one_batch():
    policy = make_policy("linucb", 8, {"epsilon": 0.0}, seed=1)
    rng = np.random.default_rng(0)
    for i in range(90):
        x = rng.standard_normal(8)
        policy.update(EXPERTS[i % 3], x, float(x[i % 3] > 0))
    counting, batched = Counting(policy), BatchedSelect()
    xs = rng.standard_normal((6, 8))
    choices = await asyncio.gather(*(batched.select(counting, x, EXPERTS, 0.0, {}) for x in xs))
    assert counting.batches == [6]
    assert [c.expert for c in choices] == [policy.select(x, EXPERTS).expert for x in xs]   # epsilon 0: no draws
    later = await batched.select(counting, xs[0], EXPERTS, 0.0, {})          # a later turn: a batch of its own
    assert counting.batches == [6, 1] and later.expert == choices[0].expert


async def test_a_bad_request_fails_alone():
    policy, batched = make_policy("linucb", 8, seed=1), BatchedSelect()
    good = np.ones(8)
    results = await asyncio.gather(
        batched.select(policy, good, EXPERTS, 0.0, {}),
        batched.select(policy, np.full(8, np.nan), EXPERTS, 0.0, {}),
        batched.select(policy, good, EXPERTS, 0.0, {"a": -1.0}),
        batched.select(policy, good, EXPERTS, 0.5, {"a": 0.1}),
        return_exceptions=True)
    assert [type(r).__name__ for r in results] == ["Choice", "ValueError", "ValueError", "Choice"]
    assert "non-finite" in str(results[1]) and "prices" in str(results[2])


async def test_a_cancelled_request_does_not_stop_the_batch():
    policy, batched = make_policy("linucb", 8, seed=1), BatchedSelect()
    first = asyncio.ensure_future(batched.select(policy, np.ones(8), EXPERTS, 0.0, {}))
    second = asyncio.ensure_future(batched.select(policy, np.ones(8), EXPERTS, 0.0, {}))
    await asyncio.sleep(0)           # both have asked
    first.cancel()
    assert (await second).expert in EXPERTS
    with pytest.raises(asyncio.CancelledError):
        await first
