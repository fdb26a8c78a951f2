"""Replay streams: one shuffled pass over a data set's rows per seed, and its summary.

Costs are divided by the premium expert's mean cost inside a stream, so a cost weight of
0.1 means "the premium expert's average cost is worth 0.1 quality" on any data set.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from common.dataset import RoutingDataset


@dataclass
class Run:
    quality: float
    cost: float                     # mean, in the data set's unit
    premium_share: float
    regret: float                   # cumulative: oracle reward - obtained reward, at this weight
    traffic: dict[str, float]
    regret_curve: list[float] = field(default_factory=list)
    quality_curve: list[float] = field(default_factory=list)   # running mean quality over the stream
    cost_curve: list[float] = field(default_factory=list)      # running mean cost over the stream
    late_quality: float = 0.0       # over the second half of the stream (learning mostly done)
    late_cost: float = 0.0
    late_by_task: dict[str, dict[str, float]] = field(default_factory=dict)   # task -> expert -> share


@dataclass
class Stream:
    """One seed's replay: rows in arrival order, with drift applied. Costs are divided by
    the premium expert's mean cost (`scale` converts back to the data set's unit)."""
    experts: list[str]
    premium: int
    order: np.ndarray
    x: np.ndarray                   # (n, d) contexts
    quality: np.ndarray             # (n, K)
    cost: np.ndarray                # (n, K)
    scale: float
    prices: dict[str, float] = field(default_factory=dict)   # list prices per call, divided like costs
    tasks: np.ndarray | None = None                          # each position's row task (for who-answers-what)

    def summarize(self, picks: np.ndarray, weight: float, curve_points: int = 50) -> Run:
        n = np.arange(len(picks))
        q, c = self.quality[n, picks], self.cost[n, picks]
        best = (self.quality - weight * self.cost).max(axis=1)
        regret = np.cumsum(best - (q - weight * c))
        counts = Counter(picks.tolist())
        idx = np.linspace(0, len(picks) - 1, curve_points).astype(int)
        running = np.arange(1, len(picks) + 1)
        late = slice(len(picks) // 2, None)
        by_task = {}
        if self.tasks is not None:
            for task in np.unique(self.tasks[late]):
                mine = picks[late][self.tasks[late] == task]
                by_task[str(task)] = {self.experts[k]: float(np.mean(mine == k)) for k in np.unique(mine)}
        return Run(float(q.mean()), float(c.mean() * self.scale), counts[self.premium] / len(picks),
                   float(regret[-1]), {self.experts[k]: v / len(picks) for k, v in counts.items()},
                   regret[idx].round(4).tolist(), (np.cumsum(q) / running)[idx].round(5).tolist(),
                   (np.cumsum(c) * self.scale / running)[idx].tolist(),
                   float(q[late].mean()), float(c[late].mean() * self.scale), by_task)


def streams(ds: RoutingDataset, x: np.ndarray, seeds: int, drift: list[tuple[int, float, float]],
            rows: np.ndarray | None = None, prices: bool = True) -> list[Stream]:
    """One shuffled stream per seed, of `rows` (indices; default every row). With `prices`,
    policies are told the data set's list prices (its meta's mean costs), as a router is
    told its catalog's."""
    q, c = ds.outcome_arrays()
    premium = ds.experts.index(ds.premium)
    scale = float(c[:, premium].mean()) or 1.0
    rows = np.arange(len(ds.rows)) if rows is None else rows
    listed = {e: v / scale for e, v in ds.prices.items()} if prices else {}
    tasks = np.array([r.task or "-" for r in ds.rows])
    out = []
    for s in range(seeds):
        order = np.random.default_rng(s).permutation(rows)
        qs = q[order].copy()
        for k, delta, frac in drift:
            qs[int(frac * len(order)):, k] = np.clip(qs[int(frac * len(order)):, k] + delta, 0.0, 1.0)
        out.append(Stream(ds.experts, premium, order, x[order], qs, c[order] / scale, scale, listed, tasks[order]))
    return out
