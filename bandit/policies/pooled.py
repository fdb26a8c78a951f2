"""Pooled LinUCB: what experts share is learned once, what tells them apart per expert.

Disjoint LinUCB learns every expert alone in the full context (hundreds of features), so
each expert needs hundreds of its own rewards before its estimate beats a guess. Routing
data has shared structure that this wastes:
- The contexts: every reward comes with a context, whoever answered. The models work in
  the top `rank` whitened principal components of all contexts learned so far (plus an
  intercept), refitted at 16, 32, 64, ... updates, then every `refit_every`. No labels
  are needed for that part, and a few components generalise better than hundreds of
  raw features (measured on the routing sets: rank 8 to 16 predicts best).
- Quality: one pooled ridge model is fitted on every expert's rewards, and each expert's
  own model is a ridge regression shrunk toward it (`prior` pseudo-observations), so a
  new expert starts from what the others taught (how hard the query is).
- Cost: an expert's price times how long the query's answer runs, so
  log cost = a_expert + beta . z, with beta shared by every expert, fitted on the rewards
  that cost something; the expected cost is that times the share of them (a failed call
  or a free expert costs 0). Each expert's offset is pulled toward its catalog price
  (`price_prior` pseudo-rewards; the router passes the catalog's expected cost), so a
  high cost weight calls exactly the cheapest expert from the first query on, and one
  noisy cost cannot make an expert look cheaper than its price says.
Exploration is cost-aware: the confidence bonus explores upward where quality may pay,
and the epsilon floor is spread only over experts no dearer than the greedy pick, so the
premium expert is never called at random. An expert with no rewards yet is scored with
the pooled quality model at its catalog price (0 when none is known: then it is tried
once it is eligible).

The snapshot is one part (the components are shared by all experts): a pooled policy
has a single learner shard, like the other shared-model policies.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Choice, Policy, PolicyParams, Score, _pack, _unpack, register

MODEL = "__pooled__"
FIRST_REFIT = 16


@dataclass(frozen=True)
class PooledParams(PolicyParams):
    alpha: float = 0.3          # width of the confidence bonus
    epsilon: float = 0.02       # exploration floor, spread over experts no dearer than the greedy pick
    rank: int = 8               # principal components of the contexts the models work in
    prior: float = 4.0          # pull of each expert's quality model toward the pooled one
    ridge: float = 1.0          # ridge of the pooled quality model and of the shared cost slope
    refit_every: int = 512      # updates between refits of the components, once past the doubling phase
    price_prior: float = 8.0    # priced rewards an expert's list price counts for in its cost model

    def validate(self) -> None:
        self.require_unit("epsilon")
        if self.rank < 1 or self.refit_every < FIRST_REFIT:
            raise ValueError(f"rank must be >= 1 and refit_every >= {FIRST_REFIT}")
        if not (self.alpha >= 0):
            raise ValueError(f"alpha must be >= 0, got {self.alpha}")
        if not (self.prior > 0 and self.ridge > 0 and self.price_prior >= 0):
            raise ValueError("prior and ridge must be > 0, price_prior >= 0")


@register
class PooledLinUCB(Policy):
    name = "pooled_linucb"
    Params = PooledParams

    def __init__(self, dim, params=None, seed=None):
        super().__init__(dim, params, seed)
        d = dim + 1
        # Per expert, in the full context with a 1 appended (refits re-express them in new
        # components): sum x x' (G), sum quality x (bq); over the rewards that cost
        # something, sum x (bp), sum log-cost x (bl) and sum log-cost^2 (l2).
        self.experts: list[str] = []
        self.G, self.bq, self.bp, self.bl = np.zeros((0, d, d)), np.zeros((0, d)), np.zeros((0, d)), np.zeros((0, d))
        self.l2 = np.zeros(0)
        self.basis = np.zeros((d, 1))                 # context -> model features; at first the intercept only
        self.basis[-1, 0] = 1.0
        self.n = 0                                    # updates learned, all experts together
        self._unfolded: dict[int, list[np.ndarray]] = {}   # contexts not yet added to G (one matmul later)
        self._reduce()

    # -- the shared components ---------------------------------------------------
    def _refit_due(self) -> bool:
        n = self.n
        if n < FIRST_REFIT:
            return False
        return (n & (n - 1) == 0 and n < self.params.refit_every) or n % self.params.refit_every == 0

    def refit(self) -> None:
        """Re-derive the whitened principal components from every context learned so far,
        and re-express each expert's statistics in them."""
        d = self.dim
        self._fold()
        total = self.G.sum(axis=0)
        mean = total[:d, d] / self.n
        values, vectors = np.linalg.eigh(total[:d, :d] / self.n - np.outer(mean, mean))
        r = min(self.params.rank, max(1, self.n // 4), d)
        top = values[::-1][:r].clip(min=0.0)
        w = vectors[:, ::-1][:, :r] / np.sqrt(top + 1e-6 * max(float(values.clip(min=0.0).sum()), 1e-12))
        basis = np.zeros((d + 1, r + 1))
        basis[:d, :r] = w
        basis[d, :r] = -mean @ w                      # centred
        basis[d, r] = 1.0                             # intercept
        self.basis = basis
        self._reduce()

    def _fold(self) -> None:
        """Add the contexts learned since the last refit to G: only refits and snapshots read
        G, and one matmul per expert costs far less than an outer product per update."""
        for k, xs in self._unfolded.items():
            x = np.asarray(xs)
            self.G[k] += x.T @ x
        self._unfolded = {}

    def _reduce(self) -> None:
        """Each expert's statistics in the current components."""
        m = self.basis
        self.R = m.T @ self.G @ m                     # (K, r, r); the last feature is the intercept
        self.rq, self.rp, self.rl = self.bq @ m, self.bp @ m, self.bl @ m
        self._fresh = False

    def _solve(self) -> None:
        """The pooled quality model, each expert's (shrunk toward it), and the cost model."""
        p, r = self.params, self.basis.shape[1]
        eye = np.eye(r)
        self.theta0 = np.linalg.solve(self.R.sum(axis=0) + p.ridge * eye, self.rq.sum(axis=0))
        self.P = np.linalg.inv(self.R + p.prior * eye)                    # (K, r, r)
        self.theta_q = np.einsum("kij,kj->ki", self.P, self.rq + p.prior * self.theta0)
        # log cost = a_k + beta . z over the priced rewards: beta from the within-expert
        # scatter (the priced rewards' share of each expert's), a_k from each mean.
        n, priced = self.R[:, -1, -1], self.rp[:, -1]
        seen = priced > 0
        s, t, lsum = self.rp[seen, :-1], self.rl[seen, :-1], self.rl[seen, -1]
        nn = priced[seen][:, None]
        share = (priced[seen] / n[seen])[:, None, None]
        scatter = (self.R[seen, :-1, :-1] * share - np.einsum("ki,kj->kij", s, s / nn)).sum(axis=0)
        cross = (t - s * lsum[:, None] / nn).sum(axis=0)
        self.beta = np.linalg.solve(scatter + p.ridge * np.eye(r - 1), cross)
        self.a = np.zeros(len(self.experts))
        self.a[seen] = (lsum - s @ self.beta) / priced[seen]
        resid = (self.l2[seen] - lsum ** 2 / priced[seen]).sum() - self.beta @ cross
        self.log_var = max(float(resid), 0.0) / max(float(priced.sum()) - seen.sum() - (r - 1), 1.0)
        self.priced_share = np.divide(priced, n, out=np.zeros_like(n), where=n > 0)
        self.seen = n > 0
        self._fresh = True

    # -- routing -----------------------------------------------------------------
    def _estimates(self, context, eligible, prices) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per eligible expert: estimated quality, cost, and x' P x."""
        if not self._fresh:
            self._solve()
        z = np.append(context, 1.0) @ self.basis
        ks = [self.experts.index(e) if e in self.experts else -1 for e in eligible]
        a, placed = self._intercepts(ks, prices)
        log_c = a + self.beta @ z[:-1] + self.log_var / 2             # mean of a log-normal cost
        q, c, var = (np.zeros(len(eligible)) for _ in range(3))
        for i, k in enumerate(ks):
            if k >= 0 and self.seen[k]:
                q[i], var[i] = self.theta_q[k] @ z, z @ self.P[k] @ z
                c[i] = self.priced_share[k] * np.exp(log_c[i])
            else:                                     # no rewards yet: the pooled model, the catalog price
                q[i], var[i] = self.theta0 @ z, z @ z / self.params.prior
                c[i] = np.exp(log_c[i]) if placed else prices[i]
        return q, c, np.maximum(var, 0.0)

    def _intercepts(self, ks: list[int], prices: np.ndarray) -> tuple[np.ndarray, bool]:
        """Each expert's log-cost intercept, pulled toward its list price by `price_prior`
        pseudo-rewards: one or two noisy costs must not make an expert look cheaper than
        its price says. List prices are put on the learned scale by the mean offset of the
        experts that have both (a list price rarely knows the answer's length). The flag:
        whether any expert had both (else prices stand as they are)."""
        n = np.array([self.rp[k, -1] if k >= 0 else 0.0 for k in ks])
        a = np.array([self.a[k] if k >= 0 else 0.0 for k in ks])
        listed = prices > 0
        both = listed & (n > 0)
        if not both.any():
            return a, False
        prior = np.log(np.where(listed, prices, 1.0)) + np.average(a[both] - np.log(prices[both]), weights=n[both])
        m = self.params.price_prior
        return np.where(listed, (n * a + m * prior) / (n + m), a), True

    def _select(self, context, eligible, cost_weight, prices) -> Choice:
        """UCB, with the epsilon floor spread only over experts no dearer than the pick."""
        q, c, var = self._estimates(context, eligible, prices)
        bonus = self.params.alpha * np.sqrt(var)
        score = q - cost_weight * c + bonus
        best = self._argmax(eligible, score)
        eps, ceiling = self.params.epsilon, c[eligible.index(best)] * (1 + 1e-9)
        cheaper = [e for i, e in enumerate(eligible) if c[i] <= ceiling]
        probs = {e: (eps / len(cheaper) if e in cheaper else 0.0) + (1.0 - eps) * (e == best) for e in eligible}
        chosen = self._draw(probs)
        scores = {e: Score(float(q[i]), float(c[i]), float(bonus[i]), float(score[i])) for i, e in enumerate(eligible)}
        return Choice(chosen, probs[chosen], probs, scores)

    # -- learning ----------------------------------------------------------------
    def _index(self, expert: str) -> int:
        if expert not in self.experts:
            self.experts.append(expert)
            d, r = self.dim + 1, self.basis.shape[1]
            self.G = np.concatenate([self.G, np.zeros((1, d, d))])
            self.bq, self.bp, self.bl = (np.concatenate([a, np.zeros((1, d))]) for a in (self.bq, self.bp, self.bl))
            self.l2 = np.append(self.l2, 0.0)
            self.R = np.concatenate([self.R, np.zeros((1, r, r))])
            self.rq, self.rp, self.rl = (np.concatenate([a, np.zeros((1, r))]) for a in (self.rq, self.rp, self.rl))
        return self.experts.index(expert)

    def _update(self, expert, context, quality, cost) -> None:
        if cost < 0:
            raise ValueError(f"cost must be >= 0, got {cost}")
        k = self._index(expert)
        x = np.append(context, 1.0)
        z = x @ self.basis
        self._unfolded.setdefault(k, []).append(x)
        self.bq[k] += quality * x
        self.R[k] += np.outer(z, z)
        self.rq[k] += quality * z
        if cost > 0:
            log_c = np.log(cost)
            self.bp[k] += x
            self.bl[k] += log_c * x
            self.l2[k] += log_c ** 2
            self.rp[k] += z
            self.rl[k] += log_c * z
        self.n += 1
        self._fresh = False
        if self._refit_due():
            self.refit()

    # -- snapshots: one part -----------------------------------------------------
    def part_of(self, expert: str) -> str:
        return MODEL

    def _state_parts(self, experts=None) -> dict[str, bytes]:
        """G (only refits read it) goes as its upper triangle in float32: a quarter of the
        bytes; what routing reads (basis, R, rq, rl) goes exactly."""
        self._fold()
        upper = np.triu_indices(self.dim + 1)
        return {MODEL: _pack({"experts": np.array(self.experts, dtype=str), "basis": self.basis,
                              "R": self.R, "rq": self.rq, "rp": self.rp, "rl": self.rl, "n": np.array(self.n),
                              "counts": np.array([self.counts.get(e, 0) for e in self.experts]),
                              "G_upper": self.G[:, upper[0], upper[1]].astype(np.float32),
                              "bq": self.bq, "bp": self.bp, "bl": self.bl, "l2": self.l2})}

    def _load_state(self, parts: dict[str, bytes]) -> None:
        if MODEL not in parts:
            return
        s = _unpack(parts[MODEL])
        if s["bq"].shape[1] != self.dim + 1:
            raise ValueError(f"snapshot is for contexts of {s['bq'].shape[1] - 1} features, policy expects {self.dim}")
        self.experts = [str(e) for e in s["experts"]]
        for k in ("bq", "bp", "bl", "l2", "basis", "R", "rq", "rp", "rl"):
            setattr(self, k, s[k])
        upper = np.triu_indices(self.dim + 1)
        self.G = np.zeros((len(self.experts), self.dim + 1, self.dim + 1))
        self.G[:, upper[0], upper[1]] = s["G_upper"]
        self.G[:, upper[1], upper[0]] = s["G_upper"]
        self.n = int(s["n"])
        self.counts = {e: int(v) for e, v in zip(self.experts, s["counts"])}
        self._unfolded = {}
        self._fresh = False

