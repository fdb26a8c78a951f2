"""Every registered policy passes the same checks; LinUCB's algebra holds."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bandit.policies import POLICIES, make_policy
from bandit.policies.linear import LinUCB

DIM = 12
EXPERTS = ["a", "b", "c"]
PARAMS = {"fixed": {"expert": "b"}, "linucb": {"project_to": 6}}   # the minimum each one needs


def _stream(seed: int, n: int):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        x = rng.standard_normal(DIM)
        yield x, {e: float(x[i] > 0) for i, e in enumerate(EXPERTS)}, rng.uniform(0, 1, 3)


def _run(policy, seed=0, n=200):
    picks = []
    for x, quality, cost in _stream(seed, n):
        c = policy.select(x, EXPERTS, cost_weight=0.1)
        picks.append(c.expert)
        policy.update(c.expert, x, quality[c.expert], float(cost[EXPERTS.index(c.expert)]))
    return picks


@pytest.fixture(params=sorted(POLICIES))
def name(request) -> str:
    return request.param


def test_probabilities_are_valid(name):
    p = make_policy(name, DIM, PARAMS.get(name), seed=3)
    _run(p, n=50)
    for x, _, _ in _stream(9, 30):
        eligible = EXPERTS[:2] if x[0] > 0 else EXPERTS
        c = p.select(x, eligible)
        assert set(c.probabilities) == set(eligible)
        assert sum(c.probabilities.values()) == pytest.approx(1.0)
        assert all(0.0 <= v <= 1.0 for v in c.probabilities.values())
        assert c.expert in eligible and c.propensity == c.probabilities[c.expert] > 0


def test_seeded_runs_repeat(name):
    assert _run(make_policy(name, DIM, PARAMS.get(name), seed=11)) == \
           _run(make_policy(name, DIM, PARAMS.get(name), seed=11))


def test_snapshot_restore_gives_identical_choices(name):
    p = make_policy(name, DIM, PARAMS.get(name), seed=5)
    _run(p, n=120)
    q = make_policy(name, DIM, PARAMS.get(name), seed=0)
    q.restore(p.snapshot())
    q.rng = np.random.default_rng(77)
    p.rng = np.random.default_rng(77)
    xs = [x for x, _, _ in _stream(21, 60)]
    assert [p.select(x, EXPERTS).probabilities for x in xs] == [q.select(x, EXPERTS).probabilities for x in xs]
    assert [p.select(x, EXPERTS).expert for x in xs] == [q.select(x, EXPERTS).expert for x in xs]
    assert q.counts == p.counts


def test_a_batch_gets_what_each_request_would_get_alone(name):
    """select_many (the router scores together the requests whose embeddings came back
    together) gives each request select's probabilities, scores and, from the same random
    stream, expert; with a cost weight and prices of its own."""
    p = make_policy(name, DIM, PARAMS.get(name), seed=5)
    _run(p, n=120)
    q = make_policy(name, DIM, PARAMS.get(name), seed=0)
    q.restore(p.snapshot())
    p.rng, q.rng = np.random.default_rng(77), np.random.default_rng(77)
    xs = [x for x, _, _ in _stream(21, 16)]
    weights = [0.0, 0.1, 0.5, 1.0] * 4
    prices = [{"a": 0.1, "b": 0.05 * (i % 3), "c": 1.0} for i in range(16)]
    alone = [p.select(x, EXPERTS, w, pr) for x, w, pr in zip(xs, weights, prices)]
    together = q.select_many(xs, EXPERTS, weights, prices)
    assert [c.expert for c in together] == [c.expert for c in alone]
    for a, b in zip(alone, together):
        assert b.probabilities == pytest.approx(a.probabilities, abs=1e-9)
        assert [v for s in b.scores.values() for v in s] == pytest.approx([v for s in a.scores.values() for v in s], abs=1e-5)


def test_unknown_hyperparameter_is_named(name):
    with pytest.raises(ValueError, match="unknown hyperparameters.*bogus"):
        make_policy(name, DIM, {**PARAMS.get(name, {}), "bogus": 1})


@pytest.mark.parametrize("params, message", [
    ({"alpha": -1.0}, "alpha must be >= 0"),
    ({"ridge": 0.0}, "ridge must be > 0"),
    ({"epsilon": 1.5}, "epsilon must be in"),
    ({"project_to": -2}, "project_to must be >= 0"),
])
def test_linucb_rejects_bad_hyperparameters(params, message):
    with pytest.raises(ValueError, match=message):
        make_policy("linucb", DIM, params)


def test_bad_context_and_empty_eligible_are_rejected():
    p = make_policy("linucb", DIM)
    with pytest.raises(ValueError, match="context has 3 features, policy expects 12"):
        p.select(np.zeros(3), EXPERTS)
    with pytest.raises(ValueError, match="non-finite"):
        p.select(np.full(DIM, np.nan), EXPERTS)
    with pytest.raises(ValueError, match="no eligible experts"):
        p.select(np.zeros(DIM), [])
    with pytest.raises(ValueError, match="unknown policy 'nope'"):
        make_policy("nope", DIM)


def test_bad_prices_are_rejected(name):
    p = make_policy(name, DIM, PARAMS.get(name), seed=0)
    for bad in ({"a": -1.0}, {"b": float("nan")}):
        with pytest.raises(ValueError, match="prices must be finite and >= 0"):
            p.select(np.zeros(DIM), EXPERTS, 1.0, bad)


@pytest.mark.parametrize("name", ["linucb", "lints", "pooled_linucb", "grouped_ts", "neural_linear"])
def test_catalog_prices_steer_the_first_query_to_the_cheapest_expert(name):
    """Before any reward, a high cost weight already calls the cheapest expert: the catalog
    says what each costs, so the cheap end of the frontier costs no exploration."""
    prices = {"a": 0.3, "b": 0.05, "c": 1.0}
    p = make_policy(name, DIM, {**PARAMS.get(name, {}), "epsilon": 0.0}, seed=0)
    rng = np.random.default_rng(1)
    for _ in range(30):
        choice = p.select(rng.standard_normal(DIM), EXPERTS, 100.0, prices)
        assert choice.expert == "b" and choice.scores["c"].estimated_cost == pytest.approx(1.0)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 400), scale=st.floats(0.01, 10.0))
def test_sherman_morrison_inverse_tracks_numpy(seed, n, scale):
    rng = np.random.default_rng(seed)
    p = LinUCB(DIM, {"ridge": 1.0}, seed=seed)
    A = np.eye(DIM + 1)
    for _ in range(n):
        x = rng.standard_normal(DIM) * scale
        p.update("a", x, float(rng.uniform()), 0.0)
        z = np.append(x, 1.0)
        A += np.outer(z, z)
    np.testing.assert_allclose(p.arms["a"].A_inv, np.linalg.inv(A), rtol=1e-6, atol=1e-9)


def test_linucb_learns_the_best_expert_per_context():
    p = make_policy("linucb", DIM, {"alpha": 0.5, "epsilon": 0.05}, seed=1)
    _run(p, seed=2, n=1500)
    right = 0
    for x, quality, _ in _stream(99, 300):
        choice = p.select(x, EXPERTS)
        best = max(choice.scores, key=lambda e: choice.scores[e].estimated_quality)
        right += quality[best] == max(quality.values())
    assert right / 300 > 0.85


def test_cost_weight_moves_the_choice_to_the_cheap_expert():
    p = make_policy("linucb", DIM, {"alpha": 0.0, "epsilon": 0.0}, seed=1)
    rng = np.random.default_rng(0)
    for _ in range(300):
        x = rng.standard_normal(DIM)
        p.update("premium", x, 0.9, 1.0)
        p.update("small", x, 0.7, 0.1)
    x = rng.standard_normal(DIM)
    assert p.select(x, ["premium", "small"], cost_weight=0.0).expert == "premium"
    assert p.select(x, ["premium", "small"], cost_weight=1.0).expert == "small"


def test_snapshot_from_other_settings_is_refused():
    learned = make_policy("linucb", DIM, {"project_to": 6})
    _run(learned, n=20)
    router = make_policy("linucb", DIM, {"project_to": 8})
    with pytest.raises(ValueError, match="must run the same policy settings"):
        router.restore(learned.snapshot())


@pytest.mark.parametrize("name", ["linucb", "lints"])
def test_new_expert_is_explored_but_bounded(name):
    p = make_policy(name, DIM, {"cold_updates": 50, "cold_share": 0.1, "epsilon": 0.05}, seed=0)
    rng = np.random.default_rng(0)
    for _ in range(300):
        x = rng.standard_normal(DIM)
        p.update("a", x, 0.2)
        p.update("b", x, 0.3)
    picks = {"a": 0, "b": 0, "new": 0}
    for t in range(900):
        x = rng.standard_normal(DIM)
        c = p.select(x, ["a", "b", "new"])
        if p.counts.get("new", 0) < 50:
            assert c.probabilities["new"] <= 0.1 + 1e-9
        assert sum(c.probabilities.values()) == pytest.approx(1.0)
        picks[c.expert] += 1
        p.update(c.expert, x, {"a": 0.2, "b": 0.3, "new": 0.9}[c.expert])
    assert p.counts["new"] >= 50 and picks["new"] > 300   # explored at a bounded rate, then wins on merit
    assert p.select(rng.standard_normal(DIM), ["a", "b", "new"]).scores["new"].estimated_quality > 0.6


def test_discounting_follows_drift():
    fixed = make_policy("linucb", DIM, {"alpha": 0.1, "epsilon": 0.0}, seed=0)
    fading = make_policy("linucb", DIM, {"alpha": 0.1, "epsilon": 0.0, "discount": 0.98}, seed=0)
    rng = np.random.default_rng(1)
    for t in range(1200):                     # "a" is better, then "b" is, after t = 600
        x = rng.standard_normal(DIM)
        for p in (fixed, fading):
            for e in ("a", "b"):
                p.update(e, x, (0.8 if e == "a" else 0.2) if t < 600 else (0.2 if e == "a" else 0.8))
    x = rng.standard_normal(DIM)
    est = {n: {e: p.select(x, ["a", "b"]).scores[e].estimated_quality for e in ("a", "b")}
           for n, p in (("fixed", fixed), ("fading", fading))}
    assert est["fading"]["b"] - est["fading"]["a"] > 0.5          # has moved to the new truth
    assert abs(est["fixed"]["b"] - est["fixed"]["a"]) < 0.1       # the undiscounted mean sits between


def _priced(policy, n=400, seed=0):
    """Three experts whose cost is a price times the query's length, and whose quality
    rises with the price."""
    rng = np.random.default_rng(seed)
    prices = {"small": 0.01, "mid": 0.1, "premium": 1.0}
    quality = {"small": 0.5, "mid": 0.7, "premium": 0.9}
    for _ in range(n):
        x = rng.standard_normal(DIM)
        for e, price in prices.items():
            policy.update(e, x, float(rng.random() < quality[e]), price * np.exp(0.3 * x[0]))
    return prices


def test_pooled_cost_model_knows_every_experts_price_per_query():
    p = make_policy("pooled_linucb", DIM, {"epsilon": 0.0, "rank": DIM}, seed=0)   # every direction kept
    prices = _priced(p)
    rng = np.random.default_rng(5)
    for _ in range(20):
        x = rng.standard_normal(DIM)
        choice = p.select(x, list(prices), cost_weight=100.0)
        assert choice.expert == "small"
        for e, price in prices.items():
            assert choice.scores[e].estimated_cost == pytest.approx(price * np.exp(0.3 * x[0]), rel=0.1)
        assert p.select(x, list(prices), cost_weight=0.0).expert == "premium"


def test_pooled_never_explores_a_dearer_expert_at_random():
    p = make_policy("pooled_linucb", DIM, {"epsilon": 0.3, "alpha": 0.0}, seed=0)
    _priced(p)
    choice = p.select(np.random.default_rng(1).standard_normal(DIM), ["small", "mid", "premium"], cost_weight=5.0)
    assert choice.probabilities["premium"] == 0.0 and choice.probabilities["mid"] == 0.0
    assert choice.probabilities["small"] == 1.0


def test_pooled_new_expert_starts_from_the_pooled_model_and_is_tried():
    p = make_policy("pooled_linucb", DIM, {"epsilon": 0.0}, seed=0)
    _priced(p)
    x = np.random.default_rng(2).standard_normal(DIM)
    choice = p.select(x, ["small", "mid", "premium", "new"], cost_weight=1.0)
    assert choice.scores["new"].estimated_cost == 0.0 and choice.expert == "new"
    assert 0.5 < choice.scores["new"].estimated_quality < 0.9          # the average of what the others taught
    priced = p.select(x, ["small", "mid", "premium", "new"], cost_weight=1.0, prices={"new": 50.0})
    assert priced.scores["new"].estimated_cost == 50.0 and priced.expert != "new"   # the catalog's price


@pytest.mark.parametrize("params, message", [
    ({"rank": 0}, "rank must be >= 1"),
    ({"prior": 0.0}, "prior and ridge must be > 0"),
    ({"price_prior": -1.0}, "price_prior >= 0"),
    ({"alpha": -0.1}, "alpha must be >= 0"),
])
def test_pooled_rejects_bad_hyperparameters(params, message):
    with pytest.raises(ValueError, match=message):
        make_policy("pooled_linucb", DIM, params)


def test_pooled_restored_learner_keeps_learning_like_the_original():
    """The snapshot keeps what refits need (G, in float32): a learner restored from it
    refits the components as the original does and routes alike afterwards."""
    a = make_policy("pooled_linucb", DIM, {"epsilon": 0.0}, seed=1)
    _run(a, n=120)
    b = make_policy("pooled_linucb", DIM, {"epsilon": 0.0}, seed=1)
    b.restore(a.snapshot())
    for x, quality, cost in _stream(3, 400):            # past the refits at 128, 256 and 512 updates
        for p in (a, b):
            p.update("a", x, quality["a"], float(cost[0]))
    assert a.n == b.n == 520 and b.basis.shape == a.basis.shape
    np.testing.assert_allclose(b.basis, a.basis, rtol=1e-3, atol=1e-5)
    xs = [x for x, _, _ in _stream(4, 30)]
    assert [a.select(x, EXPERTS, 0.1).probabilities for x in xs] == [b.select(x, EXPERTS, 0.1).probabilities for x in xs]


def test_pooled_zero_costs_lower_the_expected_cost_without_breaking_the_price():
    """A failed call (or a free expert) costs 0: the expected cost is the price times the
    share of calls that cost something, and a free expert is free."""
    p = make_policy("pooled_linucb", DIM, {"epsilon": 0.0, "rank": DIM}, seed=0)
    rng = np.random.default_rng(0)
    for t in range(500):
        x = rng.standard_normal(DIM)
        p.update("flaky", x, 0.5, 0.0 if t % 5 == 0 else 1.0)     # a fifth of its calls fail, unbilled
        p.update("free", x, 0.5, 0.0)
        p.update("paid", x, 0.5, 2.0)
    choice = p.select(rng.standard_normal(DIM), ["flaky", "free", "paid"])
    assert choice.scores["flaky"].estimated_cost == pytest.approx(0.8, rel=0.05)
    assert choice.scores["free"].estimated_cost == 0.0
    assert choice.scores["paid"].estimated_cost == pytest.approx(2.0, rel=0.05)


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
    assert len([g for g in p.groups if g.startswith("h")]) == 2 and not len(p.centroids)
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
    assert not len(p.centroids) and len(p.pending) == 39 and p.select(np.zeros(DIM), EXPERTS).expert in EXPERTS
    p.update("c", centres["a"], 0.0)
    assert len(p.centroids) == 2 and not p.pending and int(p.n[1:].sum()) == 40
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
    assert sorted(np.sign(fitted[:, 0])) == [-1.0, 1.0]            # one centroid per kind
    assert int(p.n[1:].sum()) == 40 * len(EXPERTS) and not p.pending
    for kind in "ab":
        assert p.select(centres[kind], EXPERTS).probabilities[kind] > 0.9, kind
    p.update("a", centres["a"], 1.0)                                # learning live moves them again
    assert not np.array_equal(p.centroids, fitted)

    cold = make_policy("grouped_ts", DIM, {"clusters": 2, "init": 8}, seed=0)
    for i in range(7):                                              # 7 queries, each to every expert
        for e in EXPERTS:
            cold.update(e, x[i], quality[i, EXPERTS.index(e)])
    assert not len(cold.centroids) and len(cold.pending) == 21
    cold.update("a", x[20], 0.0)                                    # the 8th query: fitted now
    assert len(cold.centroids) == 2 and not cold.pending


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
])
def test_grouped_rejects_bad_hyperparameters(params, message):
    with pytest.raises(ValueError, match=message):
        make_policy("grouped_ts", DIM, params)
