"""grouped_ts: groups from hints or learned centroids, the pull toward each expert's record,
warm start, prices (the policy contract itself is in test_policies.py)."""
from __future__ import annotations

import numpy as np
import pytest

from bandit.policies import make_policy

DIM = 12
EXPERTS = ["a", "b", "c"]


def _hinted(d: int, kind: str, rng) -> np.ndarray:
    from bandit.context import build_context
    return build_context(rng.standard_normal(d), "q", "text", {"task": kind})


def test_grouped_learns_each_hinted_kind_apart():
    """Queries with hints form their own groups: an expert that wins one kind and loses the
    other is called for the kind it wins, and a new kind starts from the experts' overall
    record."""
    from bandit.context import context_dim

    p = make_policy("grouped_ts", context_dim(8), {"v": 0.3}, seed=0)
    rng = np.random.default_rng(0)
    best = {"maths": "a", "poems": "b"}
    for _ in range(300):
        kind = ["maths", "poems"][rng.integers(2)]
        x = _hinted(8, kind, rng)
        choice = p.select(x, EXPERTS)
        p.update(choice.expert, x, float(rng.random() < (0.9 if choice.expert == best[kind] else 0.2)))
    assert len([g for g in p.groups if g.startswith("h")]) == 2 and not p.centroids.size
    for kind, expert in best.items():
        assert p.select(_hinted(8, kind, rng), EXPERTS).probabilities[expert] > 0.9, kind
    fresh = p.select(_hinted(8, "news", rng), EXPERTS)
    assert fresh.scores["c"].estimated_quality < min(fresh.scores[e].estimated_quality for e in "ab")


def test_grouped_learns_how_hard_to_pull_a_kind_toward_each_experts_record():
    """Where the experts rank the same in every kind, a kind's estimate leans on the experts'
    overall record (a new kind is barely explored); where each kind has its own best
    expert, the pull stays at `prior` and a new kind is explored afresh."""
    from bandit.context import context_dim

    rng = np.random.default_rng(3)
    spread = {}
    for differ in (False, True):
        p = make_policy("grouped_ts", context_dim(8), {}, seed=0)
        for t in range(600):
            kind = t % 4
            x = _hinted(8, f"k{kind}", rng)
            for i, e in enumerate(EXPERTS):
                chance = (0.9 if i == kind % 3 else 0.1) if differ else (0.8, 0.5, 0.2)[i]
                p.update(e, x, float(rng.random() < chance))
        pull = p._group_prior()
        assert (pull < 3.0) if differ else (pull > 30.0), (differ, pull)
        spread[differ] = p.select(_hinted(8, "new", rng), EXPERTS).scores["a"].exploration_bonus
    assert spread[True] > 3 * spread[False], spread


def test_grouped_clusters_queries_without_hints_once_it_has_seen_enough():
    """Before `init` contexts the policy routes on each expert's overall record; then it
    fits its centroids and files every remembered reward under its cluster."""
    p = make_policy("grouped_ts", DIM, {"clusters": 2, "init": 40, "v": 0.3}, seed=0)
    rng = np.random.default_rng(1)
    centres = {"a": np.full(DIM, 3.0), "b": np.full(DIM, -3.0)}     # two kinds far apart: a's kind is a's
    for t in range(39):
        kind, expert = "ab"[t % 2], "ab"[(t // 2) % 2]
        p.update(expert, centres[kind] + rng.standard_normal(DIM) * 0.1, float(kind == expert))
    assert not p.centroids.size and len(p.pending) == 39 and p.select(np.zeros(DIM), EXPERTS).expert in EXPERTS
    p.update("c", centres["a"], 0.0)
    partitions = p.params.partitions
    assert p.centroids.shape == (partitions, 2, DIM) and not p.pending and int(p.n[1:].sum()) == 40 * partitions
    for kind in "ab":
        assert p.select(centres[kind], EXPERTS).probabilities[kind] > 0.9, kind


def test_grouped_warm_start_fits_its_centroids_on_every_labelled_query_and_keeps_them():
    """A warm start sees all its labelled queries at once: the centroids come from all of
    them (not the first `init`, which here are all of one kind) and stay where they were
    fitted while every outcome is learned; each query counts once toward `init`, not once
    per expert."""
    p = make_policy("grouped_ts", DIM, {"clusters": 2, "init": 8, "v": 0.3}, seed=0)
    rng = np.random.default_rng(2)
    centres = {"a": np.full(DIM, 3.0), "b": np.full(DIM, -3.0)}
    kinds = ["a"] * 20 + ["b"] * 20                     # the first init queries are all a's kind
    x = np.array([centres[k] + rng.standard_normal(DIM) * 0.1 for k in kinds])
    quality = np.array([[float(k == e) for e in EXPERTS] for k in kinds])
    p.pretrain(x, quality, np.zeros_like(quality), EXPERTS)
    fitted = p.centroids.copy()
    assert all(sorted(np.sign(c[:, 0])) == [-1.0, 1.0] for c in fitted)    # in every partition, one centroid per kind
    assert int(p.n[1:].sum()) == 40 * len(EXPERTS) * p.params.partitions and not p.pending
    for kind in "ab":
        assert p.select(centres[kind], EXPERTS).probabilities[kind] > 0.9, kind
    p.update("a", centres["a"], 1.0)                                # learning live moves them again
    assert not np.array_equal(p.centroids, fitted)

    cold = make_policy("grouped_ts", DIM, {"clusters": 2, "init": 8}, seed=0)
    for i in range(7):                                              # 7 queries, each to every expert
        for e in EXPERTS:
            cold.update(e, x[i], quality[i, EXPERTS.index(e)])
    assert not cold.centroids.size and len(cold.pending) == 21
    cold.update("a", x[20], 0.0)                                    # the 8th query: fitted now
    assert cold.centroids.shape[:2] == (cold.params.partitions, 2) and not cold.pending


def test_grouped_averages_partitions_that_cut_the_queries_apart_differently():
    """Each partition is its own k-means (its own seeding), each learns every reward, and a
    query's estimate is the mean of its cells: one partition that lumps two kinds together
    is outvoted by those that keep them apart. With one partition, one table."""
    rng = np.random.default_rng(4)
    p = make_policy("grouped_ts", DIM, {"clusters": 3, "init": 30, "partitions": 4}, seed=0)
    xs = rng.standard_normal((60, DIM))
    for i, x in enumerate(xs):
        p.update(EXPERTS[i % 3], x, float(x[0] > 0))
    assert p.centroids.shape == (4, 3, DIM) and len({c.tobytes() for c in p.centroids}) > 1   # seeded apart
    assert len(p.groups) == 1 + 4 * 3 and int(p.n[1:].sum()) == 60 * 4                     # every reward in every partition
    x = xs[0]
    cells = [p.groups[k] for k in p._groups_of(x)]
    k = p.experts.index("a")
    pull = p._group_prior()
    q, _, _ = p._estimates(x, EXPERTS, np.zeros(3))
    record = (p.params.prior * p.sq[0].sum() / p.n[0].sum() + p.sq[0, k]) / (p.params.prior + p.n[0, k])
    cell_means = [(pull * record + p.sq[g, k]) / (pull + p.n[g, k]) for g in cells]
    assert q[0] == pytest.approx(np.mean(cell_means))
    one = make_policy("grouped_ts", DIM, {"clusters": 3, "init": 30, "partitions": 1}, seed=0)
    for i, x in enumerate(xs):
        one.update(EXPERTS[i % 3], x, float(x[0] > 0))
    assert one.centroids.shape == (1, 3, DIM) and len(one.groups) == 4


def test_grouped_prices_an_expert_it_has_not_called_at_the_groups_level():
    """A group whose answers run twice the list price (long answers) prices an expert not
    yet called there at twice its list price too, so it is not picked as falsely cheap."""
    p = make_policy("grouped_ts", DIM, {"clusters": 1, "init": 1, "price_prior": 0.0}, seed=0)
    prices = {"a": 1.0, "b": 0.6, "c": 1.0}
    for _ in range(20):
        p.update("a", np.ones(DIM), 0.5, 2.0)
    est = p.select(np.ones(DIM), EXPERTS, 1.0, prices).scores
    assert est["a"].estimated_cost == pytest.approx(2.0) and est["b"].estimated_cost == pytest.approx(1.2)


@pytest.mark.parametrize("params, message", [
    ({"v": 0.0}, "v and prior must be > 0"),
    ({"floor": 0.5}, "floor in"),
    ({"clusters": 8, "init": 4}, "init >= clusters"),
    ({"epsilon": 2.0}, "epsilon must be in"),
    ({"prior": 4.0, "prior_max": 3.0}, "prior_max must be >= prior"),
    ({"partitions": 0}, "partitions must be >= 1"),
])
def test_grouped_rejects_bad_hyperparameters(params, message):
    with pytest.raises(ValueError, match=message):
        make_policy("grouped_ts", DIM, params)
