"""Grouped Thompson sampling: which expert pays is learned per kind of query, pooled over kinds.

Routing traffic comes in kinds (a benchmark, a product feature, a tenant's app), and which
expert is best is mostly a property of the kind: on llmrouter_9models the best expert of
each task, chosen knowing every outcome, scores 0.664 where the premium scores 0.617, and
cheap experts are the best of several tasks. A model linear in the query embedding blurs
that (it fits one direction per expert); a table of kinds x experts does not, and needs few
rewards per cell when each cell is shrunk toward what the expert does everywhere.
- The group of a query: its request hints, when it has any (`task=mmlu`, `app=support`:
  the context's hint slots), else the nearest of `clusters` centroids learned from the
  contexts themselves (k-means++ on the first `init` contexts learned, then sequential
  k-means; no labels needed; a warm start fits them on all its labelled queries).
- Quality: per group and expert, the mean reward shrunk toward the expert's mean over every
  group, itself shrunk toward the mean of all experts (`prior` pseudo-rewards): a Gaussian
  posterior whose spread `v` scales. How hard a group is pulled is learned (empirical
  Bayes): the noise within groups over how much the groups' true means differ, pooled over
  experts, so traffic where the experts rank the same everywhere explores each group less.
  Thompson sampling draws from it; the probabilities (logged for off-policy evaluation)
  are the share of `samples` draws each expert wins, and the choice is drawn from them.
- Cost: per group and expert, the mean cost shrunk toward the catalog price (`price_prior`
  pseudo-costs; with no price, toward the expert's mean cost everywhere), so a high cost
  weight calls the cheapest expert from the first query and a task's long answers show.
Exploration is what the posterior allows: an expert far behind in a group is drawn rarely,
the premium expert is never called at random (an `epsilon` floor, off by default, goes
only to experts no dearer than the likeliest pick, for off-policy evaluation's support). One snapshot part (groups are shared by all
experts): one learner shard, like the other shared-model policies.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..context import hint_block
from .base import Choice, Policy, PolicyParams, Score, _pack, _unpack, register

MODEL = "__grouped__"
GLOBAL = "*"                      # the row of statistics over every group


@dataclass(frozen=True)
class GroupedParams(PolicyParams):
    v: float = 0.55               # posterior spread (standard deviations): below 1 exploits more
    prior: float = 2.0            # pseudo-rewards pulling a group's estimate toward the expert's overall one
    clusters: int = 16            # centroids for queries without hints
    init: int = 128               # contexts learned before the centroids are first fitted
    memory: int = 500             # a centroid moves by at least 1/memory toward each new context
    price_prior: float = 8.0      # pseudo-costs at the catalog price (times the group's level) in a group's cost estimate
    floor: float = 0.02           # least reward variance assumed (0/1 rewards near 0 or 1 still vary)
    samples: int = 256            # draws that estimate each expert's probability of winning
    epsilon: float = 0.0          # floor for off-policy evaluation, spread over experts no dearer than the likeliest pick
    learn_prior: bool = True      # learn the pull toward an expert's overall record from the groups' spread
    prior_max: float = 100.0      # the most pseudo-rewards a learned pull counts (groups that never differ)

    def validate(self) -> None:
        self.require_unit("epsilon")
        if not (self.v > 0 and self.prior > 0 and self.price_prior >= 0 and 0 < self.floor <= 0.25):
            raise ValueError("v and prior must be > 0, price_prior >= 0, floor in (0, 0.25]")
        if self.prior_max < self.prior:
            raise ValueError("prior_max must be >= prior")
        if self.clusters < 1 or self.init < self.clusters or self.memory < 1 or self.samples < 1:
            raise ValueError("clusters, memory and samples must be >= 1 and init >= clusters")


@register
class GroupedTS(Policy):
    name = "grouped_ts"
    Params = GroupedParams

    def __init__(self, dim, params=None, seed=None):
        super().__init__(dim, params, seed)
        self.hints = hint_block(dim)
        self.experts: list[str] = []
        self.groups: dict[str, int] = {GLOBAL: 0}
        # per group (rows; row 0 counts every reward) and expert (columns): rewards, their
        # summed quality, summed squared quality (the noise within a group) and summed cost
        self.n, self.sq, self.ssq, self.sc = (np.zeros((1, 0)) for _ in range(4))
        self.centroids = np.zeros((0, dim))
        self.weight = np.zeros(0)                   # contexts each centroid has absorbed
        self.pending: list[tuple[np.ndarray, int, float, float]] = []   # learned before the first fit
        self._distinct = 0                          # queries among them (a warm start gives each to every expert)
        self._fixed = False                         # True while a warm start learns the queries the centroids came from

    # -- groups ------------------------------------------------------------------
    def _features(self, x: np.ndarray) -> np.ndarray:
        """What clusters see: the context without its hint slots (hints name the group outright)."""
        if self.hints is None:
            return x
        x = x.copy()
        x[self.hints] = 0.0
        return x

    def _group(self, x: np.ndarray) -> str | None:
        """The group's key, or None while no centroids are fitted and the query has no hints."""
        if self.hints is not None:
            on = np.flatnonzero(x[self.hints])
            if len(on):
                return "h" + ",".join(map(str, on))
        if not len(self.centroids):
            return None
        return f"c{int(_nearest(self._features(x)[None], self.centroids)[0])}"

    def _fit_centroids(self) -> None:
        """Centroids from the contexts learned so far; their rewards then count in their clusters."""
        self._set_centroids(np.array([self._features(x) for x, *_ in self.pending]))
        pending, self.pending = self.pending, []
        for x, k_expert, quality, cost in pending:       # only queries without hints wait here
            self._add(self._row(self._group(x)), k_expert, quality, cost)

    def _set_centroids(self, xs: np.ndarray) -> None:
        """k-means++ seeding and a few Lloyd steps on the distinct contexts `xs`."""
        xs = np.unique(xs, axis=0)          # a warm start learns each labelled query once per expert
        k = min(self.params.clusters, len(xs))
        chosen = [int(self.rng.integers(len(xs)))]
        d = ((xs - xs[chosen[0]]) ** 2).sum(axis=1)
        for _ in range(k - 1):
            chosen.append(int(self.rng.choice(len(xs), p=d / d.sum())) if d.sum() > 0 else int(self.rng.integers(len(xs))))
            d = np.minimum(d, ((xs - xs[chosen[-1]]) ** 2).sum(axis=1))
        centroids = xs[chosen].copy()
        for _ in range(10):
            label = _nearest(xs, centroids)
            for j in range(k):
                if (label == j).any():
                    centroids[j] = xs[label == j].mean(axis=0)
        self.centroids = centroids
        self.weight = np.bincount(label, minlength=k).astype(float)

    def pretrain(self, contexts, quality, cost, experts) -> None:
        """Warm start: the centroids are fitted on every labelled query without hints at once
        (learning cold fits them on the first `init` and moves them after), then every
        outcome is learned. Measured on llmrouter_9models' train split, no hints: premium
        parity on the test split at 15-18% premium calls, against 36% with centroids from
        the first `init` queries moved through the warm start."""
        fitted = False
        if not len(self.centroids) and not self.pending:
            free = [self._features(x) for x in contexts if self._group(x) is None]
            if len(free) >= self.params.init:
                self._set_centroids(np.array(free))
                fitted = True
        self._fixed = fitted                # centroids fitted on these very queries stay put while they are learned
        try:
            super().pretrain(contexts, quality, cost, experts)
        finally:
            self._fixed = False

    # -- routing -----------------------------------------------------------------
    def _estimates(self, context, eligible, prices) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per eligible expert: posterior mean quality, its standard deviation, expected cost."""
        p = self.params
        key = self._group(context)
        g = self.groups.get(key) if key is not None else None
        n0, sq0, sc0 = self.n[0], self.sq[0], self.sc[0]
        overall = sq0.sum() / n0.sum() if n0.sum() > 0 else 0.5
        ks = [self.experts.index(e) if e in self.experts else -1 for e in eligible]
        level = self._price_level(g, ks, prices)
        pull = self._group_prior()
        q, sd, c = (np.zeros(len(eligible)) for _ in range(3))
        for i, k in enumerate(ks):
            seen = k >= 0
            mean = (p.prior * overall + (sq0[k] if seen else 0.0)) / (p.prior + (n0[k] if seen else 0.0))
            cost = prices[i] * level if prices[i] > 0 else (sc0[k] / n0[k] if seen and n0[k] > 0 else 0.0)
            strength = pull if seen else p.prior         # an expert never called is known nowhere
            n = 0.0
            if seen and g is not None:
                n = self.n[g, k]
                mean = (strength * mean + self.sq[g, k]) / (strength + n)
                if p.price_prior + n > 0:
                    cost = (p.price_prior * cost + self.sc[g, k]) / (p.price_prior + n)
            q[i], c[i] = mean, cost
            sd[i] = p.v * np.sqrt(max(mean * (1.0 - mean), p.floor) / (strength + n))
        return q, sd, c

    def _group_prior(self) -> float:
        """Pseudo-rewards pulling a group's estimate toward the expert's overall one: the noise
        within groups over the variance of the groups' true means (one-way random effects,
        moment estimates, pooled over experts), in [prior, prior_max]; `prior` until two
        groups hold rewards of one expert. Measured (cost weight 0, 60 seeds, paired): +0.005
        on llmrouter_9models against a fixed `prior` of 2; messplus_energy gains too."""
        p = self.params
        n, s1, s2 = self.n[1:], self.sq[1:], self.ssq[1:]
        groups, count = (n > 0).sum(axis=0), n.sum(axis=0)
        ok = (groups >= 2) & (count > groups)
        if not p.learn_prior or not ok.any():
            return p.prior
        n, s1, s2, groups, count = n[:, ok], s1[:, ok], s2[:, ok], groups[ok], count[ok]
        means = s1 / np.where(n > 0, n, 1.0)
        within = (s2 - s1 * means).sum(axis=0)                      # squares about each group's mean
        between = (n * (means - s1.sum(axis=0) / count) ** 2).sum(axis=0)
        expected = (groups - 1) * within / (count - groups)         # what noise alone puts between groups
        spread = (between - expected).sum() / (count - (n ** 2).sum(axis=0) / count).sum()
        noise = max(within.sum() / (count - groups).sum(), p.floor)
        return p.prior_max if spread <= noise / p.prior_max else float(np.clip(noise / spread, p.prior, p.prior_max))

    def _price_level(self, g: int | None, ks: list[int], prices: np.ndarray) -> float:
        """How dear this group's queries run against the catalog prices (long answers cost
        more): its priced experts' costs over their prices. Applied to an expert not yet
        called in the group, so a price is never compared with a cost on another scale."""
        if g is None:
            return 1.0
        priced = [(k, prices[i]) for i, k in enumerate(ks) if k >= 0 and prices[i] > 0 and self.n[g, k] > 0]
        billed = sum(self.sc[g, k] for k, _ in priced)
        listed = sum(self.n[g, k] * price for k, price in priced)
        return billed / listed if listed > 0 and billed > 0 else 1.0

    def _select(self, context, eligible, cost_weight, prices) -> Choice:
        q, sd, c = self._estimates(context, eligible, prices)
        value = q - cost_weight * c
        draws = value + sd * self.rng.standard_normal((self.params.samples, len(eligible)))
        wins = np.bincount(draws.argmax(axis=1), minlength=len(eligible)) / self.params.samples
        eps, ceiling = self.params.epsilon, c[int(wins.argmax())] * (1 + 1e-9)
        cheaper = [i for i in range(len(eligible)) if c[i] <= ceiling]
        probs = {e: (1.0 - eps) * float(wins[i]) + (eps / len(cheaper) if i in cheaper else 0.0)
                 for i, e in enumerate(eligible)}
        chosen = self._draw(probs)
        scores = {e: Score(float(q[i]), float(c[i]), float(sd[i]), float(value[i])) for i, e in enumerate(eligible)}
        return Choice(chosen, probs[chosen], probs, scores)

    # -- learning ----------------------------------------------------------------
    def _column(self, expert: str) -> int:
        if expert not in self.experts:
            self.experts.append(expert)
            self.n, self.sq, self.ssq, self.sc = (np.hstack([a, np.zeros((len(a), 1))]) for a in (self.n, self.sq, self.ssq, self.sc))
        return self.experts.index(expert)

    def _row(self, key: str) -> int:
        if key not in self.groups:
            self.groups[key] = len(self.groups)
            self.n, self.sq, self.ssq, self.sc = (np.vstack([a, np.zeros((1, a.shape[1]))]) for a in (self.n, self.sq, self.ssq, self.sc))
        return self.groups[key]

    def _add(self, g: int, k: int, quality: float, cost: float) -> None:
        self.n[g, k] += 1
        self.sq[g, k] += quality
        self.ssq[g, k] += quality * quality
        self.sc[g, k] += cost

    def _update(self, expert, context, quality, cost) -> None:
        if cost < 0:
            raise ValueError(f"cost must be >= 0, got {cost}")
        k = self._column(expert)
        self._add(0, k, quality, cost)
        key = self._group(context)
        if key is None:                                # no centroids yet: remember it for the first fit
            if not self.pending or not np.array_equal(self.pending[-1][0], context):
                self._distinct += 1
            self.pending.append((context, k, quality, cost))
            if self._distinct >= self.params.init:
                self._fit_centroids()
            return
        if key[0] == "c" and not self._fixed:          # sequential k-means: the centroid follows its traffic
            j = int(key[1:])
            self.weight[j] = min(self.weight[j] + 1, self.params.memory)
            self.centroids[j] += (self._features(context) - self.centroids[j]) / self.weight[j]
        self._add(self._row(key), k, quality, cost)

    # -- snapshots: one part -----------------------------------------------------
    def part_of(self, expert: str) -> str:
        return MODEL

    def _state_parts(self, experts=None) -> dict[str, bytes]:
        pend = self.pending
        return {MODEL: _pack({
            "experts": np.array(self.experts, dtype=str), "groups": np.array(list(self.groups), dtype=str),
            "n": self.n, "sq": self.sq, "ssq": self.ssq, "sc": self.sc, "centroids": self.centroids, "weight": self.weight,
            "pending_x": np.array([x for x, *_ in pend]).reshape(len(pend), self.dim),
            "pending_r": np.array([r for _, *r in pend], dtype=float).reshape(len(pend), 3),
            "counts": np.array([self.counts.get(e, 0) for e in self.experts])})}

    def _load_state(self, parts: dict[str, bytes]) -> None:
        if MODEL not in parts:
            return
        s = _unpack(parts[MODEL])
        if s["centroids"].shape[1] != self.dim:
            raise ValueError(f"snapshot is for contexts of {s['centroids'].shape[1]} features, policy expects {self.dim}")
        self.experts = [str(e) for e in s["experts"]]
        self.groups = {str(g): i for i, g in enumerate(s["groups"])}
        self.n, self.sq, self.sc, self.centroids, self.weight = (s[k] for k in ("n", "sq", "sc", "centroids", "weight"))
        self.ssq = s.get("ssq", self.sq)           # snapshots before it: 0/1 rewards, whose squares are themselves
        self.pending = [(x, int(r[0]), float(r[1]), float(r[2])) for x, r in zip(s["pending_x"], s["pending_r"])]
        self._distinct = sum(i == 0 or not np.array_equal(self.pending[i - 1][0], x)
                             for i, (x, *_) in enumerate(self.pending))
        self.counts = {e: int(v) for e, v in zip(self.experts, s["counts"])}


def _nearest(xs: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Each row's nearest centroid (squared distance expanded: no rows x centroids x features array)."""
    return ((centroids ** 2).sum(axis=1)[None] - 2.0 * xs @ centroids.T).argmin(axis=1)
