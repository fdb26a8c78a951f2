"""Offline baselines trained on the data set's train split with full information.

Both look up a query's k nearest training queries (cosine over the same embeddings the
bandits see; a training query leaves itself out) and average their outcomes:
- `knn`: every expert's quality and cost; picks argmax(quality - w * cost).
- `threshold` (RouteLLM style): the premium expert's expected quality gain over the best
  cheap expert; calls the premium expert when the gain is above a threshold, swept.
They have seen every expert's outcome on the training queries, which no bandit has: they
are the reference for what the features allow, not a fair competitor.
"""
from __future__ import annotations

import numpy as np


def train_mask(splits: list[str | None], seed: int = 0, share: float = 0.7) -> np.ndarray:
    """The data set's "train" rows, or a seeded share of all rows when it has no splits."""
    mask = np.array([s == "train" for s in splits])
    if mask.any():
        return mask
    return np.random.default_rng(seed).random(len(splits)) < share


def neighbours(emb: np.ndarray, train: np.ndarray, k: int = 20, chunk: int = 1024) -> np.ndarray:
    """Indices of each row's k nearest training rows (itself excluded; fewer than k when
    there are not that many)."""
    unit = (emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)).astype(np.float32)
    pool = np.flatnonzero(train)
    if len(pool) < 2:
        raise ValueError(f"the kNN baseline needs at least 2 training rows, the data set has {len(pool)}")
    k = min(k, len(pool) - 1)
    out = np.empty((len(emb), k), dtype=np.int64)
    for s in range(0, len(emb), chunk):
        sims = unit[s:s + chunk] @ unit[pool].T
        rows = np.arange(s, min(s + chunk, len(emb)))
        sims[pool[None, :] == rows[:, None]] = -np.inf          # leave-one-out for training rows
        top = np.argpartition(-sims, k, axis=1)[:, :k]
        out[s:s + chunk] = pool[top]
    return out


def knn_estimates(nbrs: np.ndarray, quality: np.ndarray, cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return quality[nbrs].mean(axis=1), cost[nbrs].mean(axis=1)


def knn_picks(q_hat: np.ndarray, c_hat: np.ndarray, weight: float) -> np.ndarray:
    return (q_hat - weight * c_hat).argmax(axis=1)


def threshold_picks(q_hat: np.ndarray, premium: int, weak: int, threshold: float) -> np.ndarray:
    gain = q_hat[:, premium] - q_hat[:, weak]
    return np.where(gain > threshold, premium, weak)
