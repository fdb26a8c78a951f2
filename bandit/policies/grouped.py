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
  Without hints there are `partitions` such clusterings, seeded apart, each with its own
  table, all learning every reward; a query's estimate is their average (bagging, as a
  random forest averages trees): one partition's boundaries fall where they happen to,
  the average is smoother than any one of them and costs no extra exploration.
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
    partitions: int = 8           # clusterings averaged for queries without hints (1: one table)

    def validate(self) -> None:
        self.require_unit("epsilon")
        if not (self.v > 0 and self.prior > 0 and self.price_prior >= 0 and 0 < self.floor <= 0.25):
            raise ValueError("v and prior must be > 0, price_prior >= 0, floor in (0, 0.25]")
        if self.prior_max < self.prior:
            raise ValueError("prior_max must be >= prior")
        if min(self.clusters, self.memory, self.samples, self.partitions) < 1 or self.init < self.clusters:
            raise ValueError("clusters, memory, samples and partitions must be >= 1 and init >= clusters")


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
        self.centroids = np.zeros((0, 0, dim))      # partitions x clusters x features
        self.weight = np.zeros((0, 0))              # contexts each centroid has absorbed
        self.pending: list[tuple[np.ndarray, int, float, float]] = []   # learned before the first fit
        self._distinct = 0                          # queries among them (a warm start gives each to every expert)
        self._fixed = False                         # True while a warm start learns the queries the centroids came from
        self._pull: float | None = None             # the learned pull, until the next reward

    # -- groups ------------------------------------------------------------------
    def _features(self, x: np.ndarray) -> np.ndarray:
        """What clusters see: the context without its hint slots (hints name the group outright)."""
        if self.hints is None:
            return x
        x = x.copy()
        x[self.hints] = 0.0
        return x

    def _groups_of(self, x: np.ndarray) -> list[str] | None:
        """The query's group keys: its hints' one, or its cluster in every partition; None
        while no centroids are fitted and the query has no hints."""
        if self.hints is not None:
            on = np.flatnonzero(x[self.hints])
            if len(on):
                return ["h" + ",".join(map(str, on))]
        if not self.centroids.size:
            return None
        return [f"c{j}.{i}" for j, i in enumerate(self._nearest_clusters(self._features(x)))]

    def _nearest_clusters(self, f: np.ndarray) -> np.ndarray:
        """In each partition, the index of the centroid nearest to features `f`."""
        c = self.centroids
        return ((c ** 2).sum(axis=2) - 2.0 * c @ f).argmin(axis=1)

    def _fit_centroids(self) -> None:
        """Centroids from the contexts learned so far; their rewards then count in their clusters."""
        self._set_centroids(np.array([self._features(x) for x, *_ in self.pending]))
        pending, self.pending = self.pending, []
        for x, k_expert, quality, cost in pending:       # only queries without hints wait here
            for key in self._groups_of(x):
                self._add(self._row(key), k_expert, quality, cost)

    def _set_centroids(self, xs: np.ndarray) -> None:
        """Every partition: k-means++ seeding (its own draws) and a few Lloyd steps on the
        distinct contexts `xs`."""
        xs = np.unique(xs, axis=0)          # a warm start learns each labelled query once per expert
        fits = [_kmeans(xs, min(self.params.clusters, len(xs)), self.rng) for _ in range(self.params.partitions)]
        self.centroids = np.stack([c for c, _ in fits])
        self.weight = np.stack([w for _, w in fits])

    def pretrain(self, contexts, quality, cost, experts) -> None:
        """Warm start: the centroids are fitted on every labelled query without hints at once
        (learning cold fits them on the first `init` and moves them after), then every
        outcome is learned. Measured on llmrouter_9models' train split, no hints, one
        clustering: premium parity on the test split at 15-18% premium calls (three unseeded
        draws), against 36% with centroids from the first `init` queries moved through the
        warm start."""
        fitted = False
        if not self.centroids.size and not self.pending:
            free = [self._features(x) for x in contexts if self._groups_of(x) is None]
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
        """Per eligible expert: posterior mean quality, its standard deviation, expected cost,
        each the average over the query's groups (one per partition, or its hints' one)."""
        p = self.params
        keys = self._groups_of(context) or []
        rows = [self.groups.get(key, -1) for key in keys] or [-1]     # -1: a group with no rewards yet
        overall = self.sq[0].sum() / self.n[0].sum() if self.n[0].sum() > 0 else 0.5
        ks = [self.experts.index(e) if e in self.experts else -1 for e in eligible]
        seen = np.array(ks) >= 0
        # index -1 (a group or an expert with no rewards yet) reads the zero row or column added here
        table = np.zeros((3, len(self.n) + 1, len(self.experts) + 1))
        table[:, :-1, :-1] = self.n, self.sq, self.sc
        n0, sq0, sc0 = table[:, 0, ks]
        n, sq, sc = table[:, rows][:, :, ks]
        mean = (p.prior * overall + sq0) / (p.prior + n0)
        # A group's price level: how dear its queries run against the catalog (long answers
        # cost more), its priced experts' costs over their prices. An expert not yet called
        # in the group is priced at its list price times that level, so a price is never
        # compared with a cost on another scale; an expert with no price, at its mean cost.
        listed = prices > 0
        billed = np.where(listed[None] & (n > 0), sc, 0.0).sum(axis=1)
        booked = (n * prices[None]).sum(axis=1)
        level = np.where((booked > 0) & (billed > 0), billed / np.where(booked > 0, booked, 1.0), 1.0)
        mean_cost = np.where(n0 > 0, sc0 / np.where(n0 > 0, n0, 1.0), 0.0)
        cost = np.where(listed[None], prices[None] * level[:, None], mean_cost[None])
        strength = np.where(seen, self._group_prior(), p.prior)      # an expert never called is known nowhere
        q = (strength * mean + sq) / (strength + n)
        if p.price_prior > 0:
            cost = (p.price_prior * cost + sc) / (p.price_prior + n)
        else:
            cost = np.where(n > 0, sc / np.where(n > 0, n, 1.0), cost)
        sd = p.v * np.sqrt(np.maximum(q * (1.0 - q), p.floor) / (strength + n))
        return q.mean(axis=0), sd.mean(axis=0), cost.mean(axis=0)

    def _group_prior(self) -> float:
        """Pseudo-rewards pulling a group's estimate toward the expert's overall one (computed
        once per reward learned): the noise within groups over the variance of the groups'
        true means (one-way random effects, moment estimates, pooled over experts and
        partitions), in [prior, prior_max]; `prior` until two groups hold rewards of one
        expert. Measured (cost weight 0, 60 seeds, paired): +0.005 on llmrouter_9models
        against a fixed `prior` of 2; messplus_energy gains too."""
        p = self.params
        if self._pull is not None:
            return self._pull
        n, s1, s2 = self.n[1:], self.sq[1:], self.ssq[1:]
        groups, count = (n > 0).sum(axis=0), n.sum(axis=0)
        ok = (groups >= 2) & (count > groups)
        pull = p.prior
        if p.learn_prior and ok.any():
            n, s1, s2, groups, count = n[:, ok], s1[:, ok], s2[:, ok], groups[ok], count[ok]
            means = s1 / np.where(n > 0, n, 1.0)
            within = (s2 - s1 * means).sum(axis=0)                      # squares about each group's mean
            between = (n * (means - s1.sum(axis=0) / count) ** 2).sum(axis=0)
            expected = (groups - 1) * within / (count - groups)         # what noise alone puts between groups
            spread = (between - expected).sum() / (count - (n ** 2).sum(axis=0) / count).sum()
            noise = max(within.sum() / (count - groups).sum(), p.floor)
            pull = p.prior_max if spread <= noise / p.prior_max else float(np.clip(noise / spread, p.prior, p.prior_max))
        self._pull = pull
        return pull

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
        self._pull = None
        k = self._column(expert)
        self._add(0, k, quality, cost)
        keys = self._groups_of(context)
        if keys is None:                               # no centroids yet: remember it for the first fit
            if not self.pending or not np.array_equal(self.pending[-1][0], context):
                self._distinct += 1
            self.pending.append((context, k, quality, cost))
            if self._distinct >= self.params.init:
                self._fit_centroids()
            return
        if keys[0][0] == "c" and not self._fixed:      # sequential k-means: each centroid follows its traffic
            f = self._features(context)
            for j, key in enumerate(keys):
                i = int(key.split(".")[1])
                self.weight[j, i] = min(self.weight[j, i] + 1, self.params.memory)
                self.centroids[j, i] += (f - self.centroids[j, i]) / self.weight[j, i]
        for key in keys:
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
        if s["centroids"].shape[-1] != self.dim:
            raise ValueError(f"snapshot is for contexts of {s['centroids'].shape[-1]} features, policy expects {self.dim}")
        self.experts = [str(e) for e in s["experts"]]
        self.groups = {str(g): i for i, g in enumerate(s["groups"])}
        self.n, self.sq, self.sc, self.centroids, self.weight = (s[k] for k in ("n", "sq", "sc", "centroids", "weight"))
        self.ssq = s.get("ssq", self.sq)           # snapshots before it: 0/1 rewards, whose squares are themselves
        self.pending = [(x, int(r[0]), float(r[1]), float(r[2])) for x, r in zip(s["pending_x"], s["pending_r"])]
        self._distinct = sum(i == 0 or not np.array_equal(self.pending[i - 1][0], x)
                             for i, (x, *_) in enumerate(self.pending))
        self.counts = {e: int(v) for e, v in zip(self.experts, s["counts"])}
        self._pull = None


def _kmeans(xs: np.ndarray, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """k-means++ seeding and 10 Lloyd steps: the centroids and how many of `xs` each holds."""
    chosen = [int(rng.integers(len(xs)))]
    d = ((xs - xs[chosen[0]]) ** 2).sum(axis=1)
    for _ in range(k - 1):
        chosen.append(int(rng.choice(len(xs), p=d / d.sum())) if d.sum() > 0 else int(rng.integers(len(xs))))
        d = np.minimum(d, ((xs - xs[chosen[-1]]) ** 2).sum(axis=1))
    centroids = xs[chosen].copy()
    for _ in range(10):
        label = _nearest(xs, centroids)
        for j in range(k):
            if (label == j).any():
                centroids[j] = xs[label == j].mean(axis=0)
    return centroids, np.bincount(label, minlength=k).astype(float)


def _nearest(xs: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Each row's nearest centroid (squared distance expanded: no rows x centroids x features array)."""
    return ((centroids ** 2).sum(axis=1)[None] - 2.0 * xs @ centroids.T).argmin(axis=1)
