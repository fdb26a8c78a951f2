"""Long-run budget pacing: keep the mean cost per query at or under B.

An online dual variable mu (projected subgradient ascent on the budget constraint):
    mu <- clip(mu + step * (cost - B) / B, 0, max_weight)
is added to every request's cost weight, so when spending runs above B the policy
weighs cost more until it comes back under. Dividing by B makes `step` unit-free.
Each router replica paces the traffic it serves; with traffic spread evenly over
replicas, the mean over all of them is kept too.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class BudgetPacer:
    budget: float                 # B: target mean cost per query (the expert prices' unit)
    step: float = 0.05
    max_weight: float = 1e6
    mu: float = 0.0               # the dual variable: extra cost weight

    def __post_init__(self) -> None:
        if not (math.isfinite(self.budget) and self.budget > 0):
            raise ValueError(f"budget must be a finite number > 0, got {self.budget}")
        if not (self.step > 0 and self.max_weight > 0):
            raise ValueError("step and max_weight must be > 0")

    def weight(self, request_weight: float) -> float:
        """The cost weight to use for a request that asked for `request_weight`."""
        return request_weight + self.mu

    def observe(self, cost: float) -> None:
        self.mu = min(max(self.mu + self.step * (cost - self.budget) / self.budget, 0.0), self.max_weight)
