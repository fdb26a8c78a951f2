"""Context-free baselines: a fixed expert, uniform random, epsilon-greedy on mean reward."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import ArmPolicy, Choice, PolicyParams, Score, register


class _MeanTracker(ArmPolicy):
    """Running mean of quality and cost per expert (the state every baseline keeps)."""

    def __init__(self, dim, params=None, seed=None):
        super().__init__(dim, params, seed)
        self.sums: dict[str, np.ndarray] = {}   # expert -> [n, sum quality, sum cost]

    def _update(self, expert, context, quality, cost) -> None:
        self.sums.setdefault(expert, np.zeros(3))
        self.sums[expert] += (1.0, quality, cost)

    def _means(self, eligible: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s = np.array([self.sums.get(e, np.zeros(3)) for e in eligible])
        n = np.maximum(s[:, 0], 1.0)
        return s[:, 0], s[:, 1] / n, s[:, 2] / n

    def known_experts(self) -> list[str]:
        return list(self.sums)

    def _arm_state(self, expert):
        return {"sums": self.sums.get(expert, np.zeros(3))}

    def _load_arm(self, expert, state) -> None:
        self.sums[expert] = np.array(state["sums"], dtype=np.float64)


@dataclass(frozen=True)
class FixedParams(PolicyParams):
    expert: str = ""

    def validate(self) -> None:
        if not self.expert:
            raise ValueError("fixed policy needs params.expert")


@register
class Fixed(_MeanTracker):
    """Always the same expert (e.g. always-premium); falls back to uniform when ineligible."""

    name = "fixed"
    Params = FixedParams

    def _select(self, context, eligible, cost_weight, prices) -> Choice:
        if self.params.expert in eligible:
            probs = {e: float(e == self.params.expert) for e in eligible}
        else:
            probs = {e: 1.0 / len(eligible) for e in eligible}
        chosen = self._draw(probs)
        return Choice(chosen, probs[chosen], probs)


@register
class Random(_MeanTracker):
    name = "random"

    def _select(self, context, eligible, cost_weight, prices) -> Choice:
        probs = {e: 1.0 / len(eligible) for e in eligible}
        chosen = self._draw(probs)
        return Choice(chosen, probs[chosen], probs)


@dataclass(frozen=True)
class EpsilonGreedyParams(PolicyParams):
    epsilon: float = 0.1

    def validate(self) -> None:
        self.require_unit("epsilon")


@register
class EpsilonGreedy(_MeanTracker):
    """Mean reward per expert, ignoring the context; untried experts are tried first."""

    name = "epsilon_greedy"
    Params = EpsilonGreedyParams

    def _select(self, context, eligible, cost_weight, prices) -> Choice:
        n, q, c = self._means(eligible)
        value = np.where(n > 0, q - cost_weight * c, np.inf)
        best = self._argmax(eligible, value)
        probs = self._epsilon_probabilities(eligible, best, self.params.epsilon)
        chosen = self._draw(probs)
        scores = {e: Score(float(q[i]), float(c[i]), 0.0, float(q[i] - cost_weight * c[i]))
                  for i, e in enumerate(eligible)}
        return Choice(chosen, probs[chosen], probs, scores)
