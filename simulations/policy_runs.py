"""Running policies over replay streams: hyperparameters, one replay, and many of them in
parallel processes (each (policy, cost weight, seed) replay is independent of the others).
"""
from __future__ import annotations

import json
import os
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from multiprocessing import get_context

import numpy as np

from bandit.policies import POLICIES, make_policy

from .streams import Stream
from .warmstart import pretrain

# Tuned on llmrouter_9models (2 seeds, cost weights 0 and 0.1): the full 390-feature context
# beats a 64-dimensional projection by about 0.03 quality there. pooled_linucb: rank 8 and
# alpha 0.3 chosen on llmrouter_9models (3 seeds, rank 6-16, alpha 0.1-1.0) and confirmed
# on messplus_energy (rank 8 predicts best on both with full information, too).
# grouped_ts: v 0.55 and prior 2 chosen on llmrouter_9models with --hints task (3 seeds, v 0.4 /
# 0.55, prior 1 / 2 / 4: hull quality at half the premium's cost 0.622-0.625) and confirmed
# on messplus_energy (v 0.4 / 0.55 within 0.001 there); its defaults are the dataclass's.
# Its learned pull (learn_prior) chosen on llmrouter_9models without hints (cost weight 0, 60
# seeds, paired: +0.0048 +- 0.0014 against a fixed prior 2; per-expert pulls +0.0031) and
# confirmed on messplus_energy (30 seeds: AIQ +0.0025, the premium's and the 8B's points +0.005
# and +0.003), with and without --hints task. Its 8 partitions (bagged clusterings) chosen on
# llmrouter_9models without hints (10 seeds, against 1: AIQ 0.5952 -> 0.5994, the premium's
# point 0.6138 -> 0.6188) and confirmed on messplus_energy (see the README's replay section).
POLICY_PARAMS = {"grouped_ts": {},
                 "pooled_linucb": {"rank": 8, "alpha": 0.3, "epsilon": 0.02},
                 "linucb": {"alpha": 0.2, "epsilon": 0.02},
                 "lints": {"v": 0.1, "epsilon": 0.02},
                 "neural_linear": {"epsilon": 0.02, "train_every": 512}}


def policy_params(name: str, weight: float, overrides: dict | None = None) -> dict:
    """The replay's hyperparameters for a policy (defaults, then the user's `--params`); one
    that fixes its cost weight at build time (VW) gets the sweep's weight, since it ignores
    the per-request one."""
    params = {**POLICY_PARAMS.get(name, {}), **(overrides or {}).get(name, {})}
    if "cost_weight" in {f.name for f in fields(POLICIES[name].Params)}:
        params["cost_weight"] = weight
    return params


def parse_params(raw: str, policies: list[str], dim: int) -> dict[str, dict]:
    """`--params '{"linucb": {"alpha": 0.1}}'`: per-policy overrides, checked before any replay."""
    try:
        params = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"--params is not JSON: {exc}") from None
    if not isinstance(params, dict) or not all(isinstance(v, dict) for v in params.values()):
        raise SystemExit('--params must map policy names to objects, e.g. {"linucb": {"alpha": 0.1}}')
    stray = sorted(set(params) - set(policies))
    if stray:
        raise SystemExit(f"--params names policies that are not replayed: {stray} (replayed: {policies})")
    for name in params:
        try:
            make_policy(name, dim, policy_params(name, 0.0, params))
        except (ValueError, TypeError) as exc:
            raise SystemExit(f"--params for {name}: {exc}") from None
    return params


def bandit_picks(name: str, st: Stream, weight: float, seed: int, delay: int, params: dict,
                 warm: bytes | None = None) -> np.ndarray:
    """One replay: the policy (started from the `warm` snapshot if given) sees only its picks' outcomes."""
    policy = make_policy(name, st.x.shape[1], params, seed=seed)
    if warm is not None:
        policy.restore(warm)
    pending: deque = deque()
    picks = np.empty(len(st.order), dtype=int)
    for t in range(len(st.order)):
        k = st.experts.index(policy.select(st.x[t], st.experts, weight, st.prices).expert)
        picks[t] = k
        pending.append(t)
        if len(pending) > delay:            # the reward of the query `delay` places back arrives now
            tt = pending.popleft()
            kk = picks[tt]
            policy.update(st.experts[kk], st.x[tt], st.quality[tt, kk], st.cost[tt, kk])
    return picks


@dataclass
class Jobs:
    """What every (policy, cost weight, seed) replay reads; sent once to each job process."""
    streams: list[Stream]
    delay: int
    overrides: dict | None = None
    warm: dict[str, bytes] = field(default_factory=dict)   # warm_key -> snapshot to start from

    @staticmethod
    def warm_key(name: str, params: dict) -> str:
        return f"{name} {json.dumps(params, sort_keys=True)}"

    def run(self, name: str, weight: float, seed: int) -> np.ndarray:
        params = policy_params(name, weight, self.overrides)
        return bandit_picks(name, self.streams[seed], weight, seed, self.delay, params,
                            self.warm.get(self.warm_key(name, params)))

    def warm_start(self, policies: list[str], grid: list[float], x: np.ndarray, quality: np.ndarray,
                   cost: np.ndarray, rows: np.ndarray, log=print) -> None:
        """Train each distinct (policy, hyperparameters) once on the labelled `rows`, seeded
        (a clustering policy's k-means draws), so the same command gives the same report."""
        experts = self.streams[0].experts
        for name in policies:
            for w in grid:
                params = policy_params(name, w, self.overrides)
                key = self.warm_key(name, params)
                if key not in self.warm:
                    t0 = time.monotonic()
                    policy = pretrain(make_policy(name, x.shape[1], params, seed=0), x, quality, cost, experts, rows)
                    self.warm[key] = policy.snapshot()
                    log(f"  warm start: {name} trained on {len(rows)} labelled rows ({time.monotonic() - t0:.1f}s)")


_JOBS: Jobs | None = None   # a job process's copy (set by its initializer)


def _init_job_process(jobs: Jobs) -> None:
    global _JOBS
    _JOBS = jobs


def _run_job(key: tuple[str, float, int]) -> tuple[tuple, np.ndarray]:
    return key, _JOBS.run(*key)


def all_bandit_picks(policies: list[str], grid: list[float], jobs: Jobs, processes: int,
                     log=print) -> dict[tuple[str, float, int], np.ndarray]:
    """Every (policy, cost weight, seed) replay, spread over processes: they are independent.
    Spawned, not forked: the caller may hold threads (torch, gRPC) that a fork would break."""
    work = [(n, w, s) for n in policies for w in grid for s in range(len(jobs.streams))]
    t0, out = time.monotonic(), {}

    def progress(done: int) -> None:
        if done % max(1, len(work) // 10) == 0 or done == len(work):
            log(f"  replays done: {done}/{len(work)} ({time.monotonic() - t0:.0f}s)")

    if processes <= 1 or len(work) <= 1:
        for key in work:
            out[key] = jobs.run(*key)
            progress(len(out))
        return out
    with one_blas_thread_per_process(), ProcessPoolExecutor(
            min(processes, len(work)), mp_context=get_context("spawn"),
            initializer=_init_job_process, initargs=(jobs,)) as pool:
        for key, picks in pool.map(_run_job, work):
            out[key] = picks
            progress(len(out))
    return out


@contextmanager
def one_blas_thread_per_process():
    """Job processes started inside see one BLAS thread each: `jobs` of them fill the cores."""
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {n: os.environ.get(n) for n in names}
    os.environ.update({n: "1" for n in names})
    try:
        yield
    finally:
        for n, v in saved.items():
            if v is None:
                os.environ.pop(n, None)
            else:
                os.environ[n] = v
