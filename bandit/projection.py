"""A fixed random projection of the context (e.g. 386 -> 64 features).

Regenerated from (in_dim, out_dim, seed), so a snapshot only records those numbers.
Johnson-Lindenstrauss: Gaussian columns scaled by 1/sqrt(out_dim) keep distances, which
is what a linear bandit over sentence embeddings needs; the matrices shrink d^2-fold.
A constant 1 is appended after projecting, so the linear model always has an intercept.
"""
from __future__ import annotations

import numpy as np


class Projection:
    def __init__(self, in_dim: int, out_dim: int, seed: int = 0):
        self.in_dim = in_dim
        self.out_dim = (out_dim or in_dim) + 1
        self.matrix = None
        if out_dim:
            rng = np.random.default_rng(seed)
            self.matrix = rng.standard_normal((in_dim, out_dim)) / np.sqrt(out_dim)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        z = x if self.matrix is None else x @ self.matrix
        return np.append(z, 1.0)

    def many(self, xs: np.ndarray) -> np.ndarray:
        """Rows of contexts, each projected as __call__ would."""
        z = xs if self.matrix is None else xs @ self.matrix
        return np.hstack([z, np.ones((len(z), 1))])
