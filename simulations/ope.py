"""Off-policy estimates of a candidate policy's value from logged decisions.

Logged data: per decision the reward, the chosen expert (an index), its propensity
p(a|x) under the logging policy, and optionally a reward model q_hat(x, a) for every
expert. The candidate is given as its action distribution pi(a|x) on the same rows.
Estimators are small immutable objects holding their parameters (switch-DR's `tau`),
registered by name (one registry, as for policies); `evaluate` runs the instances it is
given with bootstrap confidence intervals and reports the effective sample size of the
importance weights. Formulas follow Open Bandit Pipeline,
against which tests/integration/test_ope.py checks them.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np


@dataclass(frozen=True)
class Logged:
    reward: np.ndarray          # (n,)
    action: np.ndarray          # (n,) int
    pscore: np.ndarray          # (n,) p(action | x) under the logging policy
    q_hat: np.ndarray | None = None   # (n, K) estimated reward of every action

    def __post_init__(self) -> None:
        n = len(self.reward)
        if not (len(self.action) == len(self.pscore) == n):
            raise ValueError("reward, action and pscore must have one entry per logged decision")
        bad = np.flatnonzero(~(self.pscore > 0) | ~np.isfinite(self.pscore))
        if len(bad):
            raise ValueError(f"propensities must be > 0; row {int(bad[0])} has {float(self.pscore[bad[0]])}")
        if not np.all(np.isfinite(self.reward)):
            raise ValueError(f"reward of row {int(np.flatnonzero(~np.isfinite(self.reward))[0])} is not finite")


@dataclass(frozen=True)
class Estimator(ABC):
    """An estimator with its parameters (immutable); `estimate` is the mean of `rounds`."""

    name: ClassVar[str]
    needs_model: ClassVar[bool] = False

    @abstractmethod
    def rounds(self, d: Logged, pi: np.ndarray) -> np.ndarray:
        """Per-decision terms whose mean is the estimate."""

    def estimate(self, d: Logged, pi: np.ndarray) -> float:
        return float(self.rounds(d, pi).mean())


def weights(d: Logged, pi: np.ndarray) -> np.ndarray:
    return pi[np.arange(len(d.action)), d.action] / d.pscore


ESTIMATORS: dict[str, type[Estimator]] = {}


def register(cls):
    if cls.name in ESTIMATORS:
        raise ValueError(f"estimator {cls.name!r} registered twice")
    ESTIMATORS[cls.name] = cls
    return cls


@register
@dataclass(frozen=True)
class IPS(Estimator):
    name: ClassVar[str] = "ips"

    def rounds(self, d, pi):
        return d.reward * weights(d, pi)


@register
@dataclass(frozen=True)
class SNIPS(Estimator):
    name: ClassVar[str] = "snips"

    def rounds(self, d, pi):
        w = weights(d, pi)
        return d.reward * w / w.mean()


@register
@dataclass(frozen=True)
class DR(Estimator):
    name: ClassVar[str] = "dr"
    needs_model: ClassVar[bool] = True

    def rounds(self, d, pi):
        n = np.arange(len(d.action))
        return (pi * d.q_hat).sum(axis=1) + weights(d, pi) * (d.reward - d.q_hat[n, d.action])


@register
@dataclass(frozen=True)
class SwitchDR(Estimator):
    """DR where the weight is at most tau; the reward model alone beyond it."""

    tau: float = 10.0
    name: ClassVar[str] = "switch_dr"
    needs_model: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if not self.tau > 0:
            raise ValueError(f"switch_dr: tau must be > 0, got {self.tau}")

    def rounds(self, d, pi):
        n = np.arange(len(d.action))
        w = weights(d, pi)
        return (pi * d.q_hat).sum(axis=1) + (w <= self.tau) * w * (d.reward - d.q_hat[n, d.action])


DEFAULT_ESTIMATORS: tuple[Estimator, ...] = (IPS(), SNIPS(), DR(), SwitchDR())


def effective_sample_size(d: Logged, pi: np.ndarray) -> float:
    """(sum w)^2 / sum w^2: how many on-policy samples the weighted log is worth."""
    w = weights(d, pi)
    return float(w.sum() ** 2 / (w ** 2).sum()) if w.any() else 0.0


def evaluate(d: Logged, pi: np.ndarray, estimators: tuple[Estimator, ...] = DEFAULT_ESTIMATORS,
             n_boot: int = 200, alpha: float = 0.05, seed: int = 0) -> dict:
    """Each estimate with a bootstrap (1 - alpha) interval over resampled decisions; an
    estimator that needs a reward model is left out when the log has none."""
    if pi.shape != (len(d.action), pi.shape[1]) or not np.allclose(pi.sum(axis=1), 1.0):
        raise ValueError("pi must be (n decisions, K experts) with rows summing to 1")
    rng = np.random.default_rng(seed)
    out = {"ess": effective_sample_size(d, pi), "n": len(d.action), "estimates": {}}
    boots = [rng.integers(0, len(d.action), len(d.action)) for _ in range(n_boot)]
    for est in estimators:
        if est.needs_model and d.q_hat is None:
            continue
        samples = [est.estimate(_take(d, idx), pi[idx]) for idx in boots]
        lo, hi = np.quantile(samples, [alpha / 2, 1 - alpha / 2])
        out["estimates"][est.name] = {"value": est.estimate(d, pi), "ci": [float(lo), float(hi)]}
    return out


def _take(d: Logged, idx: np.ndarray) -> Logged:
    return Logged(d.reward[idx], d.action[idx], d.pscore[idx], None if d.q_hat is None else d.q_hat[idx])
