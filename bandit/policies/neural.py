"""Neural-linear bandit: a learned representation with a Bayesian linear head per expert.

An MLP f(x) (torch; on the GPU when there is one) is trained on a buffer of recent
rewards to predict every expert's quality (one output per expert, trained only on the
expert that was chosen). Exploration happens in the last layer: a LinTS head over
[f(x)] per expert, whose posteriors are rebuilt from the buffer after each retraining
(Riquelme et al., "Deep Bayesian Bandits Showdown", 2018). Retraining runs inside
update() every `train_every` updates, that is in the learner; routers only run f(x).
The representation is shared by all experts, so the snapshot is one part: a neural
policy has a single learner shard. The buffer is not in the snapshot: a restarted
learner keeps the network and heads and refills the buffer from new rewards.
"""
from __future__ import annotations

import io
from collections import deque
from dataclasses import dataclass

import numpy as np

from .base import Choice, Policy, PolicyParams, register
from .linear import LinTS

MODEL = "__neural__"


@dataclass(frozen=True)
class NeuralParams(PolicyParams):
    hidden: int = 64
    features: int = 32
    buffer: int = 4096            # recent (context, expert, quality, cost) kept for training
    train_every: int = 256        # updates between retrainings
    epochs: int = 20
    batch: int = 64
    lr: float = 1e-3
    v: float = 0.3                # the heads' posterior scale (LinTS)
    epsilon: float = 0.05
    ridge: float = 1.0
    device: str = ""              # "" = cuda when available

    RUNTIME = ("device",)         # a model trained on the GPU serves on a CPU router

    def validate(self) -> None:
        for name in ("hidden", "features", "buffer", "train_every", "epochs", "batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (self.lr > 0 and self.v > 0 and self.ridge > 0):
            raise ValueError("lr, v and ridge must be > 0")
        self.require_unit("epsilon")


@register
class NeuralLinear(Policy):
    name = "neural_linear"
    Params = NeuralParams

    def __init__(self, dim, params=None, seed=None):
        super().__init__(dim, params, seed)
        import torch

        p = self.params
        self.torch = torch
        self.device = p.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.gen = torch.Generator().manual_seed(0 if seed is None else int(seed))
        torch.manual_seed(0 if seed is None else int(seed))
        self.body = torch.nn.Sequential(
            torch.nn.Linear(dim, p.hidden), torch.nn.ReLU(),
            torch.nn.Linear(p.hidden, p.features), torch.nn.ReLU()).to(self.device)
        self.experts: list[str] = []            # output column of each expert
        self.out: torch.nn.Linear | None = None      # one output per expert, grown as they appear
        self.head = self._new_head()
        self.buffer: deque = deque(maxlen=p.buffer)
        self.since_training = 0

    def _new_head(self) -> LinTS:
        p = self.params
        return LinTS(self.params.features, {"v": p.v, "epsilon": p.epsilon, "ridge": p.ridge},
                     seed=int(self.rng.integers(2**31)))

    def _features(self, x: np.ndarray) -> np.ndarray:
        with self.torch.no_grad():
            t = self.torch.as_tensor(np.atleast_2d(x), dtype=self.torch.float32, device=self.device)
            return self.body(t).cpu().numpy().astype(np.float64)

    def _select(self, context, eligible, cost_weight, prices) -> Choice:
        self.head.rng = self.rng   # one seeded stream of randomness for the whole policy
        return self.head.select(self._features(context)[0], eligible, cost_weight, dict(zip(eligible, prices)))

    def _update(self, expert, context, quality, cost) -> None:
        if expert not in self.experts:
            self._add_output(expert)
        self.buffer.append((context.astype(np.float32), self.experts.index(expert), quality, cost))
        self.head.update(expert, self._features(context)[0], quality, cost)
        self.since_training += 1
        if self.since_training >= self.params.train_every:
            self.retrain()

    def _add_output(self, expert: str) -> None:
        torch = self.torch
        old = self.out
        self.out = torch.nn.Linear(self.params.features, len(self.experts) + 1).to(self.device)
        if old is not None:
            with torch.no_grad():
                self.out.weight[:-1] = old.weight
                self.out.bias[:-1] = old.bias
        self.experts.append(expert)

    def retrain(self) -> None:
        """Fit the representation on the buffer, then rebuild every head from it."""
        torch, p = self.torch, self.params
        self.since_training = 0
        if not self.buffer:
            return
        xs = torch.as_tensor(np.stack([b[0] for b in self.buffer]), device=self.device)
        arm = torch.as_tensor([b[1] for b in self.buffer], device=self.device)
        q = torch.as_tensor([b[2] for b in self.buffer], dtype=torch.float32, device=self.device)
        opt = torch.optim.Adam([*self.body.parameters(), *self.out.parameters()], lr=p.lr)
        for _ in range(p.epochs):
            order = torch.randperm(len(xs), generator=self.gen).to(self.device)
            for i in range(0, len(xs), p.batch):
                idx = order[i:i + p.batch]
                pred = self.out(self.body(xs[idx])).gather(1, arm[idx, None])[:, 0]
                loss = torch.nn.functional.mse_loss(pred, q[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        self.head = self._new_head()
        feats = self._features(xs.cpu().numpy())
        for f, (_, a, quality, cost) in zip(feats, self.buffer):
            self.head.update(self.experts[a], f, quality, cost)

    # -- snapshots: one part --------------------------------------------------------
    def part_of(self, expert: str) -> str:
        return MODEL

    def _state_parts(self, experts=None) -> dict[str, bytes]:
        buf = io.BytesIO()
        self.torch.save({"body": self.body.state_dict(), "out": self.out.state_dict() if self.out else None,
                         "experts": self.experts, "counts": self.counts,
                         "head": self.head.snapshot()}, buf)
        return {MODEL: buf.getvalue()}

    def _load_state(self, parts: dict[str, bytes]) -> None:
        if MODEL not in parts:
            return
        state = self.torch.load(io.BytesIO(parts[MODEL]), map_location=self.device, weights_only=True)
        self.experts = list(state["experts"])
        self.body.load_state_dict(state["body"])
        self.out = None
        if state["out"] is not None:
            self.out = self.torch.nn.Linear(self.params.features, len(self.experts)).to(self.device)
            self.out.load_state_dict(state["out"])
        self.counts = dict(state["counts"])
        self.head = self._new_head()
        self.head.restore(state["head"])
