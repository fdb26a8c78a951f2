"""Policy throughput and memory: our policies beside MABWiser's LinUCB and Vowpal Wabbit.

`./run.sh bench` (or `python -m bench.policies`). One synthetic linear stream per case
(d features, K experts); every library sees the same contexts and rewards. Each step is
one selection plus one update of the chosen expert. MABWiser is the baseline measured in
the same run: the table prints each library's steps/s and its ratio to MABWiser's.
Runs pinned to one BLAS thread so "one core" means one core.
"""
from __future__ import annotations

import argparse
import os
import pickle
import time

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import numpy as np  # noqa: E402  (after the thread settings)

from bandit.context import hint_block  # noqa: E402
from bandit.policies import make_policy  # noqa: E402


def stream(d: int, k: int, n: int, seed: int = 0):
    """Contexts without request hints (their slots zero, as a request without hints has
    them: grouped_ts would otherwise file every query in a group of its own)."""
    rng = np.random.default_rng(seed)
    theta = rng.standard_normal((k, d)) / np.sqrt(d)
    xs = rng.standard_normal((n, d))
    if (hints := hint_block(d)) is not None:
        xs[:, hints] = 0.0
    return xs, xs @ theta.T + 0.1 * rng.standard_normal((n, k))


def run_ours(name: str, params: dict, d: int, k: int, n: int, warm: int) -> tuple[float, float]:
    xs, rewards = stream(d, k, n + warm)
    experts = [f"e{i}" for i in range(k)]
    p = make_policy(name, d, params, seed=0)
    for t in range(warm):
        p.update(experts[t % k], xs[t], float(rewards[t, t % k]))
    start = time.perf_counter()
    for t in range(warm, warm + n):
        e = p.select(xs[t], experts).expert
        p.update(e, xs[t], float(rewards[t, experts.index(e)]))
    rate = n / (time.perf_counter() - start)
    held = getattr(p, "nbytes", None) or len(pickle.dumps(p.parts()))   # VW: the saved model
    return rate, held / k


def select_latency_us(d: int, k: int, n: int = 500, name: str = "linucb", warm: int = 0) -> float:
    warm = max(warm, 10 * k)
    xs, rewards = stream(d, k, n + warm)
    experts = [f"e{i}" for i in range(k)]
    p = make_policy(name, d, {}, seed=0)
    for t in range(warm):
        p.update(experts[t % k], xs[t], float(rewards[t, t % k]))
    samples = []
    for x in xs[warm:]:
        t0 = time.perf_counter()
        p.select(x, experts)
        samples.append(time.perf_counter() - t0)
    return float(np.median(samples) * 1e6)


def run_mabwiser(d: int, k: int, n: int, warm: int) -> tuple[float, float]:
    from mabwiser.mab import MAB, LearningPolicy

    xs, rewards = stream(d, k, n + warm)
    experts = [f"e{i}" for i in range(k)]
    mab = MAB(experts, LearningPolicy.LinUCB(alpha=1.0), seed=0)
    mab.fit([experts[t % k] for t in range(warm)], [rewards[t, t % k] for t in range(warm)], xs[:warm])
    start = time.perf_counter()
    for t in range(warm, warm + n):
        e = mab.predict(xs[t:t + 1])
        mab.partial_fit([e], [rewards[t, experts.index(e)]], xs[t:t + 1])
    rate = n / (time.perf_counter() - start)
    per_expert = len(pickle.dumps(mab._imp.arm_to_model)) / k
    return rate, per_expert


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=400, help="measured steps per case (MABWiser gets a quarter)")
    args = ap.parse_args(argv)
    print(f"{'case':<12}{'library':<26}{'steps/s':>10}{'x MABWiser':>12}{'KiB/expert':>12}")
    for d in (384, 64):
        for k in (5, 50):
            warm = 2 * k
            base, base_mem = run_mabwiser(d, k, max(50, args.steps // 4), warm)
            rows = [("MABWiser LinUCB", base, base_mem),
                    ("ours LinUCB", *run_ours("linucb", {}, d, k, args.steps, warm)),
                    ("ours LinTS", *run_ours("lints", {}, d, k, args.steps, warm)),
                    ("ours grouped_ts", *run_ours("grouped_ts", {}, d, k, args.steps, 256)),
                    ("VW cb_explore_adf squarecb", *run_ours("vw", {}, d, k, args.steps, warm))]
            for lib, rate, mem in rows:
                print(f"{f'd={d} K={k}':<12}{lib:<26}{rate:>10.0f}{rate / base:>12.1f}{mem / 1024:>12.1f}")
    print(f"\nour LinUCB selection, K=10, d=384, one core: median {select_latency_us(384, 10):.0f} us "
          f"(target < 200 us); d=64: {select_latency_us(64, 10):.0f} us")
    print(f"grouped_ts (the services' default) selection, K=10, d=384, its centroids fitted: median "
          f"{select_latency_us(384, 10, name='grouped_ts', warm=256):.0f} us")
    print("KiB/expert: ours = float64 learning state + float32 serving copy in memory; MABWiser = its "
          "pickled arm model (A, A_inv, ...);\nVW = its saved model (one hashed table for all experts) / K.")


if __name__ == "__main__":
    main()
