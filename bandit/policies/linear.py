"""Disjoint linear bandits: LinUCB and linear Thompson sampling.

Each expert keeps one ridge design matrix shared by two regressions, quality and cost,
so the cost weight lambda can change per request:
    value(a) = theta_q(a).x - lambda * theta_c(a).x
LinUCB adds alpha * sqrt(x' A_a^-1 x) and takes the argmax, mixed with an epsilon floor.
LinTS samples theta_q from its Gaussian posterior; for one context the sampled value is
N(theta_q.x, v^2 x' A^-1 x), so the probability of each expert winning is estimated from
`samples` draws, mixed with the epsilon floor, and the choice is drawn from exactly
those probabilities: the logged propensity is the probability actually used.
"""
from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass

import numpy as np

from .base import ArmPolicy, Choice, PolicyParams, Score, register
from ..projection import Projection


@dataclass(frozen=True)
class LinearParams(PolicyParams):
    ridge: float = 1.0          # A starts as ridge * I
    epsilon: float = 0.05       # floor of uniform exploration
    project_to: int = 0         # 0 = use the context as is; else a fixed random projection
    projection_seed: int = 0
    discount: float = 1.0       # < 1: older rewards fade (A <- g A + (1 - g) ridge I + x x'), for drift
    cold_updates: int = 0       # an expert with fewer updates than this counts as new ...
    cold_share: float = 0.1     # ... and new experts together get at most this probability

    def validate(self) -> None:
        if not (self.ridge > 0):
            raise ValueError(f"ridge must be > 0, got {self.ridge}")
        if not (0.0 < self.discount <= 1.0):
            raise ValueError(f"discount must be in (0, 1], got {self.discount}")
        if self.cold_updates < 0 or not (0.0 < self.cold_share <= 1.0):
            raise ValueError("cold_updates must be >= 0 and cold_share in (0, 1]")
        self.require_unit("epsilon")
        if self.project_to < 0:
            raise ValueError(f"project_to must be >= 0, got {self.project_to}")


class _Arm:
    __slots__ = ("A_inv", "b_q", "b_c", "theta")

    def __init__(self, d: int, ridge: float):
        self.A_inv = np.eye(d) / ridge          # (ridge * I + sum x x')^-1
        self.b_q = np.zeros(d)                  # sum quality * x
        self.b_c = np.zeros(d)                  # sum cost * x
        self.refresh()

    def refresh(self) -> None:
        self.theta = np.stack([self.A_inv @ self.b_q, self.A_inv @ self.b_c])   # rows: quality, cost


class _LinearPolicy(ArmPolicy):
    """The per-expert ridge regressions; subclasses decide how to explore.

    Learning runs in float64. Selection reads float32 copies of every arm kept in one
    contiguous block (row i = the i-th expert added), so that scoring all experts is one
    batched read of the d x d matrices, at half the memory traffic.
    """

    def __init__(self, dim, params=None, seed=None):
        super().__init__(dim, params, seed)
        p = self.params
        self.proj = Projection(dim, p.project_to, p.projection_seed)
        self.arms: dict[str, _Arm] = {}
        d = self.proj.out_dim
        self._a32 = np.empty((0, d, d), dtype=np.float32)      # serving copies of A^-1
        self._t32 = np.empty((0, 2, d), dtype=np.float32)      # serving copies of theta
        self._rows: dict[str, int] = {}                        # expert -> row (order added)

    def _arm(self, expert: str) -> _Arm:
        arm = self.arms.get(expert)
        if arm is None:   # a new expert starts from the prior and is found by exploration
            arm = self.arms[expert] = _Arm(self.proj.out_dim, self.params.ridge)
            row = self._rows[expert] = len(self._rows)
            if row >= len(self._a32):   # grow the serving block (doubling)
                grow = max(4, len(self._a32))
                self._a32 = np.concatenate([self._a32, np.empty((grow, *self._a32.shape[1:]), np.float32)])
                self._t32 = np.concatenate([self._t32, np.empty((grow, *self._t32.shape[1:]), np.float32)])
            self._publish(expert, arm)
        return arm

    @property
    def nbytes(self) -> int:
        """Memory held for the arms: float64 learning state plus float32 serving copies."""
        k = len(self.arms)
        own = sum(a.A_inv.nbytes + a.b_q.nbytes + a.b_c.nbytes + a.theta.nbytes for a in self.arms.values())
        return own + self._a32[:k].nbytes + self._t32[:k].nbytes

    def _publish(self, expert: str, arm: _Arm) -> None:
        """Copy an arm's current state into its serving row."""
        row = self._rows[expert]
        self._a32[row] = arm.A_inv
        self._t32[row] = arm.theta

    def _estimates(self, xs: np.ndarray, eligible: list[str],
                   prices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per request (row of the projected contexts `xs`) and eligible expert (column):
        estimated quality, estimated cost (the catalog price until its first reward),
        x' A^-1 x. Each expert's A^-1 is read once for all the rows: scoring is bound by
        reading those d x d matrices, so a batch of requests costs about what one does."""
        x32 = xs.astype(np.float32)
        for e in eligible:
            self._arm(e)
        k = len(self.arms)
        if eligible == list(self.arms):   # the usual case: every expert is eligible, rows 0..k-1
            a_inv, theta = self._a32[:k], self._t32[:k]
        else:
            rows = [self._rows[e] for e in eligible]
            a_inv, theta = self._a32[rows], self._t32[rows]
        q, c = x32 @ theta[:, 0].T, x32 @ theta[:, 1].T                  # (B, K) each
        var = np.einsum("kbd,bd->bk", np.matmul(x32, a_inv), x32)         # (B, K)
        untried = np.array([self.counts.get(e, 0) == 0 for e in eligible])
        cost = np.where(untried, prices, c.astype(np.float64))
        return q.astype(np.float64), cost, np.maximum(var, 0.0).astype(np.float64)

    def _select(self, context, eligible, cost_weight, prices) -> Choice:
        return self._select_many(context[None], eligible, [cost_weight], prices[None])[0]

    def _select_many(self, contexts, eligible, cost_weights, prices) -> list[Choice]:
        q, c, var = self._estimates(self.proj.many(contexts), eligible, prices)
        return [self._pick(eligible, q[i], c[i], var[i], w) for i, w in enumerate(cost_weights)]

    @abstractmethod
    def _pick(self, eligible: list[str], q: np.ndarray, c: np.ndarray, var: np.ndarray, cost_weight: float) -> Choice:
        """One request's choice from its estimates: how the subclass explores."""

    def _update(self, expert, context, quality, cost) -> None:
        x = self.proj(context)
        arm = self._arm(expert)
        g = self.params.discount
        if g < 1.0:
            # Discounted: the prior stays ridge * I while the data fades, so the inverse is
            # recomputed (O(d^3): use project_to with it).
            d = len(x)
            A = g * np.linalg.inv(arm.A_inv) + (1.0 - g) * self.params.ridge * np.eye(d) + np.outer(x, x)
            arm.A_inv = np.linalg.inv(A)
            arm.b_q *= g
            arm.b_c *= g
        else:
            # Sherman-Morrison: (A + x x')^-1 = A^-1 - (A^-1 x)(x' A^-1) / (1 + x' A^-1 x)
            ax = arm.A_inv @ x
            arm.A_inv -= np.outer(ax, ax) / (1.0 + x @ ax)
        arm.b_q += quality * x
        arm.b_c += cost * x
        arm.refresh()
        self._publish(expert, arm)

    def _choose(self, eligible: list[str], probs: dict[str, float], q, c, explore, score) -> Choice:
        """Bound new experts' share, draw from the probabilities, and explain the choice."""
        probs = self._bound_cold(probs)
        chosen = self._draw(probs)
        scores = {e: Score(float(q[i]), float(c[i]), float(explore[i]), float(score[i]))
                  for i, e in enumerate(eligible)}
        return Choice(chosen, probs[chosen], probs, scores)

    def _bound_cold(self, probs: dict[str, float]) -> dict[str, float]:
        """Cap the probability that new experts get together at cold_share; the rest goes to
        the known ones in proportion. An added expert is explored, but cannot take over."""
        n = self.params.cold_updates
        cold = [e for e in probs if self.counts.get(e, 0) < n]
        warm = [e for e in probs if self.counts.get(e, 0) >= n]
        mass = sum(probs[e] for e in cold)
        if not cold or not warm or mass <= self.params.cold_share:
            return probs
        shrink = self.params.cold_share / mass
        warm_mass = 1.0 - mass
        out = {e: probs[e] * shrink for e in cold}
        out.update({e: (probs[e] / warm_mass if warm_mass > 0 else 1.0 / len(warm)) * (1.0 - self.params.cold_share)
                    for e in warm})
        return out

    def known_experts(self) -> list[str]:
        return list(self.arms)

    def _arm_state(self, expert):
        arm = self._arm(expert)
        return {"A_inv": arm.A_inv, "b_q": arm.b_q, "b_c": arm.b_c}

    def _load_arm(self, expert, state) -> None:
        arm = _Arm(self.proj.out_dim, self.params.ridge)
        arm.A_inv, arm.b_q, arm.b_c = (np.array(state[k], dtype=np.float64) for k in ("A_inv", "b_q", "b_c"))
        arm.refresh()
        self._arm(expert)   # make sure it has a serving row
        self.arms[expert] = arm
        self._publish(expert, arm)


@dataclass(frozen=True)
class LinUCBParams(LinearParams):
    alpha: float = 1.0          # width of the confidence bonus

    def validate(self) -> None:
        super().validate()
        if not (self.alpha >= 0):
            raise ValueError(f"alpha must be >= 0, got {self.alpha}")


@register
class LinUCB(_LinearPolicy):
    name = "linucb"
    Params = LinUCBParams

    def _pick(self, eligible, q, c, var, cost_weight) -> Choice:
        bonus = self.params.alpha * np.sqrt(var)
        score = q - cost_weight * c + bonus
        best = self._argmax(eligible, score)
        return self._choose(eligible, self._epsilon_probabilities(eligible, best, self.params.epsilon),
                            q, c, bonus, score)


@dataclass(frozen=True)
class LinTSParams(LinearParams):
    v: float = 0.5              # posterior scale: theta ~ N(theta_hat, v^2 A^-1)
    samples: int = 256          # draws that estimate each expert's probability of winning

    def validate(self) -> None:
        super().validate()
        if not (self.v > 0):
            raise ValueError(f"v must be > 0, got {self.v}")
        if self.samples < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")


@register
class LinTS(_LinearPolicy):
    name = "lints"
    Params = LinTSParams

    def _pick(self, eligible, q, c, var, cost_weight) -> Choice:
        spread = self.params.v * np.sqrt(var)
        value = q - cost_weight * c
        draws = value + spread * self.rng.standard_normal((self.params.samples, len(eligible)))
        wins = np.bincount(draws.argmax(axis=1), minlength=len(eligible)) / self.params.samples
        k, eps = len(eligible), self.params.epsilon
        probs = {e: eps / k + (1.0 - eps) * float(wins[i]) for i, e in enumerate(eligible)}
        return self._choose(eligible, probs, q, c, spread, value)
