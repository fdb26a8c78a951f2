"""On a synthetic linear environment with a known best expert per context, the contextual
policies learn (regret grows sublinearly) and beat context-free epsilon-greedy."""
from __future__ import annotations

import numpy as np
import pytest

from bandit.policies import make_policy

D, K, T = 8, 4, 2000
EXPERTS = [f"e{k}" for k in range(K)]


def regret_curve(name: str, params: dict, seed: int) -> np.ndarray:
    env = np.random.default_rng(1000 + seed)
    theta = env.standard_normal((K, D)) / np.sqrt(D)
    policy = make_policy(name, D, params, seed=seed)
    regret = np.empty(T)
    for t in range(T):
        x = env.standard_normal(D)
        means = theta @ x
        choice = policy.select(x, EXPERTS)
        k = EXPERTS.index(choice.expert)
        policy.update(choice.expert, x, float(means[k] + 0.1 * env.standard_normal()))
        regret[t] = means.max() - means[k]
    return np.cumsum(regret)


@pytest.mark.parametrize("name, params", [
    ("linucb", {"alpha": 0.5}),
    ("lints", {"v": 0.3}),
])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_contextual_policies_learn_and_beat_epsilon_greedy(name, params, seed):
    pure = regret_curve(name, {**params, "epsilon": 0.0}, seed)
    assert pure[-1] - pure[-501] < 0.1 * pure[499], pure[[499, -501, -1]]     # sublinear: it converges
    floored = regret_curve(name, {**params, "epsilon": 0.02}, seed)            # as deployed, with a floor
    greedy = regret_curve("epsilon_greedy", {"epsilon": 0.1}, seed)
    assert floored[-1] < 0.1 * greedy[-1], (floored[-1], greedy[-1])
    assert greedy[-1] < regret_curve("random", {}, seed)[-1] * 1.05           # the baseline itself is sane


def test_neural_linear_learns_and_beats_epsilon_greedy():
    params = {"train_every": 200, "hidden": 32, "features": 16}
    pure = regret_curve("neural_linear", {**params, "epsilon": 0.0}, 0)
    assert pure[-1] - pure[-501] < 0.1 * pure[499], pure[[499, -501, -1]]
    floored = regret_curve("neural_linear", {**params, "epsilon": 0.02}, 0)
    assert floored[-1] < 0.2 * regret_curve("epsilon_greedy", {"epsilon": 0.1}, 0)[-1]


def shared_structure_regret(name: str, params: dict, seed: int, d: int = 64, k: int = 6, t: int = 3000) -> float:
    """A routing-like problem: queries come from a few latent topics embedded in many
    dimensions; every expert's quality is a shared difficulty plus its own skill per
    topic, and experts differ in price. Reward = quality - 0.1 * cost."""
    env = np.random.default_rng(500 + seed)
    topics, rank = 5, 4
    centres = env.standard_normal((topics, rank)) @ env.standard_normal((rank, d)) / np.sqrt(d)
    skill = env.uniform(0.2, 0.8, (k, topics))
    difficulty = env.uniform(-0.15, 0.15, topics)
    price = np.geomspace(0.05, 1.0, k)
    experts = [f"e{i}" for i in range(k)]
    policy = make_policy(name, d, params, seed=seed)
    regret = 0.0
    for _ in range(t):
        topic = env.integers(topics)
        x = centres[topic] + 0.05 * env.standard_normal(d)
        means = np.clip(skill[:, topic] + difficulty[topic], 0, 1) - 0.1 * price
        choice = policy.select(x, experts, cost_weight=0.1)
        i = experts.index(choice.expert)
        quality = float(env.random() < means[i] + 0.1 * price[i])
        policy.update(choice.expert, x, quality, float(price[i]))
        regret += means.max() - means[i]
    return regret


def test_pooled_default_beats_the_old_default_on_shared_structure():
    """The replay's default (pooled LinUCB) against the default before it (disjoint LinUCB,
    alpha 0.2, epsilon 0.02), each with its shipped hyperparameters, over four seeds: the
    old default's regret swings with its first few choices (130 to 450 here, a tie broken
    one way or the other at the first query), so one seed can go either way."""
    from simulations.policy_runs import POLICY_PARAMS

    new = np.mean([shared_structure_regret("pooled_linucb", POLICY_PARAMS["pooled_linucb"], s) for s in range(4)])
    old = np.mean([shared_structure_regret("linucb", {"alpha": 0.2, "epsilon": 0.02}, s) for s in range(4)])
    assert new < 0.8 * old, (new, old)


def hinted_kinds_regret(name: str, params: dict, seed: int, d: int = 32, k: int = 6, kinds: int = 10,
                        t: int = 3000) -> float:
    """Product traffic with request hints: each kind of query (its `task` hint) has its own
    best expert among experts of similar overall quality, the embeddings of different kinds
    overlap, and prices differ. Reward = quality - 0.1 * cost."""
    from bandit.context import build_context, context_dim

    env = np.random.default_rng(700 + seed)
    skill = env.uniform(0.3, 0.6, (k, kinds))
    skill[env.integers(k, size=kinds), np.arange(kinds)] = 0.9           # one clear winner per kind
    centres = env.standard_normal((kinds, d)) * 0.3
    price = np.geomspace(0.05, 1.0, k)
    experts = [f"e{i}" for i in range(k)]
    policy = make_policy(name, context_dim(d), params, seed=seed)
    regret = 0.0
    for _ in range(t):
        kind = env.integers(kinds)
        x = build_context(centres[kind] + env.standard_normal(d), "q", "text", {"task": f"k{kind}"})
        means = skill[:, kind] - 0.1 * price
        choice = policy.select(x, experts, cost_weight=0.1, prices=dict(zip(experts, price)))
        i = experts.index(choice.expert)
        policy.update(choice.expert, x, float(env.random() < skill[i, kind]), float(price[i]))
        regret += means.max() - means[i]
    return regret


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grouped_beats_the_previous_default_when_requests_carry_hints(seed):
    """grouped_ts (the replay's first policy now) against pooled LinUCB (the default before
    it), each with its shipped hyperparameters, on traffic whose kinds are named by hints."""
    from simulations.policy_runs import POLICY_PARAMS

    new = hinted_kinds_regret("grouped_ts", POLICY_PARAMS.get("grouped_ts", {}), seed)
    old = hinted_kinds_regret("pooled_linucb", POLICY_PARAMS["pooled_linucb"], seed)
    assert new < 0.4 * old, (new, old)                     # measured: 94-170 against 660-846
    assert new < 0.2 * hinted_kinds_regret("random", {}, seed)


def ranked_kinds_regret(params: dict, seed: int, d: int = 16, k: int = 6, kinds: int = 20, t: int = 3000) -> float:
    """Traffic in many kinds (hints) where the experts rank the same in every kind (within
    0.02): what a kind teaches about an expert holds in the others. Reward = quality."""
    from bandit.context import build_context, context_dim

    env = np.random.default_rng(900 + seed)
    skill = np.clip(env.uniform(0.35, 0.75, k)[:, None] + env.uniform(-0.02, 0.02, (k, kinds)), 0, 1)
    centres = env.standard_normal((kinds, d)) * 0.3
    experts = [f"e{i}" for i in range(k)]
    policy = make_policy("grouped_ts", context_dim(d), params, seed=seed)
    regret = 0.0
    for _ in range(t):
        kind = env.integers(kinds)
        x = build_context(centres[kind] + env.standard_normal(d), "q", "text", {"task": f"k{kind}"})
        i = experts.index(policy.select(x, experts).expert)
        policy.update(experts[i], x, float(env.random() < skill[i, kind]))
        regret += skill[:, kind].max() - skill[i, kind]
    return regret


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grouped_learned_pull_beats_a_fixed_one_when_kinds_share_their_ranking(seed):
    """grouped_ts's default (the pull toward each expert's overall record learned from the
    kinds' spread) against the default before it (a fixed pull of `prior` 2 pseudo-rewards,
    which explores every kind afresh). Measured: 3-28 against 124-172 over six seeds."""
    new = ranked_kinds_regret({}, seed)
    old = ranked_kinds_regret({"learn_prior": False}, seed)
    assert new < 0.4 * old, (new, old)


def smooth_regret(params: dict, seed: int, d: int = 6, k: int = 4, t: int = 3000) -> float:
    """Traffic without hints whose best expert changes smoothly across the query space
    (each expert's chance of a good answer logistic in the context): no clustering's
    boundaries fall where the best expert changes. Reward = quality."""
    env = np.random.default_rng(300 + seed)
    skill, offset = env.standard_normal((k, d)) * 1.5, np.linspace(0.0, -0.6, k)
    experts = [f"e{i}" for i in range(k)]
    policy = make_policy("grouped_ts", d, params, seed=seed)
    regret = 0.0
    for _ in range(t):
        x = env.standard_normal(d)
        chance = 1.0 / (1.0 + np.exp(-(skill @ x + offset)))
        i = experts.index(policy.select(x, experts).expert)
        policy.update(experts[i], x, float(env.random() < chance[i]))
        regret += chance.max() - chance[i]
    return regret


def test_grouped_partitions_beat_one_clustering_where_the_best_expert_changes_smoothly():
    """grouped_ts's default (8 clusterings averaged) against the default before it (one):
    measured 268-398 against 350-588 over six seeds, lower in each."""
    new = [smooth_regret({}, s) for s in range(3)]
    old = [smooth_regret({"partitions": 1}, s) for s in range(3)]
    assert all(a < 0.9 * b for a, b in zip(new, old)), (new, old)
