"""Vowpal Wabbit's contextual bandit (`--cb_explore_adf`) behind the policy interface.

Each request is one multi-line example: the context as a shared dense namespace `s` and
one action line per eligible expert (namespace `a`, the expert's name), with quadratic
`s x a` interactions, so experts can be added at any time. VW returns the exploration
distribution (squarecb or epsilon-greedy); the choice is drawn from it with the
policy's seeded generator, so the logged propensity is exactly the one used.
VW learns one reward, quality - cost_weight * cost, with cost_weight fixed by the
hyperparameters (VW's cost is the negative reward); the per-request lambda is not used.
The whole model is one snapshot part: a VW policy has a single learner shard.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass

import numpy as np
import vowpalwabbit

from .base import Choice, Policy, PolicyParams, register

MODEL = "__vw_model__"
ALGORITHMS = ("squarecb", "epsilon")


@dataclass(frozen=True)
class VWParams(PolicyParams):
    algorithm: str = "squarecb"
    epsilon: float = 0.05         # for algorithm="epsilon"
    gamma_scale: float = 10.0     # for algorithm="squarecb": larger = greedier
    cost_weight: float = 0.0
    learning_rate: float = 0.5
    bits: int = 18

    def validate(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {self.algorithm!r}")
        self.require_unit("epsilon")
        if not (self.gamma_scale > 0 and self.learning_rate > 0 and self.cost_weight >= 0):
            raise ValueError("gamma_scale and learning_rate must be > 0, cost_weight >= 0")
        if not 10 <= self.bits <= 30:
            raise ValueError(f"bits must be in [10, 30], got {self.bits}")

    def arguments(self, seed: int) -> str:
        explore = (f"--squarecb --gamma_scale {self.gamma_scale}" if self.algorithm == "squarecb"
                   else f"--epsilon {self.epsilon}")
        return (f"--cb_explore_adf {explore} -q sa --quiet -b {self.bits} "
                f"-l {self.learning_rate} --random_seed {seed}")


@register
class VowpalWabbit(Policy):
    name = "vw"
    Params = VWParams

    def __init__(self, dim, params=None, seed=None):
        super().__init__(dim, params, seed)
        self._seed = 0 if seed is None else int(seed) % 2**31
        self.ws = vowpalwabbit.Workspace(self.params.arguments(self._seed))
        self._recent: dict[bytes, str] = {}

    def _shared(self, x: np.ndarray) -> str:
        """The context as VW text; kept for recent contexts, since an update follows its select."""
        key = x.tobytes()
        line = self._recent.get(key)
        if line is None:
            line = "shared |s " + " ".join(f"{i}:{v:.6g}" for i, v in enumerate(x.tolist()) if v)
            self._recent[key] = line
            if len(self._recent) > 1024:
                self._recent.pop(next(iter(self._recent)))
        return line

    def _lines(self, x: np.ndarray, eligible: list[str], label: tuple[int, float, float] | None = None) -> list[str]:
        lines = [self._shared(x)]
        for i, e in enumerate(eligible):
            prefix = f"0:{label[1]:.6g}:{label[2]:.6g} " if label and label[0] == i else ""
            lines.append(f"{prefix}|a {_token(e)}")
        return lines

    def _select(self, context, eligible, cost_weight, prices) -> Choice:
        pmf = np.asarray(self.ws.predict(self._lines(context, eligible)), dtype=np.float64)
        pmf = pmf / pmf.sum()
        probs = {e: float(pmf[i]) for i, e in enumerate(eligible)}
        chosen = self._draw(probs)
        return Choice(chosen, probs[chosen], probs)

    def _update(self, expert, context, quality, cost) -> None:
        # The learner sees only the chosen expert's reward: a one-action example. VW's default
        # cb_type (mtr) regresses on the chosen action only, so the other actions add nothing;
        # p = 1 makes this a direct reward regression rather than an importance-weighted one.
        reward = quality - self.params.cost_weight * cost
        self.ws.learn(self._lines(context, [expert], label=(0, -reward, 1.0)))

    # -- snapshots: one opaque model part ------------------------------------------
    def part_of(self, expert: str) -> str:
        return MODEL

    def _state_parts(self, experts=None) -> dict[str, bytes]:
        fd, path = tempfile.mkstemp(suffix=".vw")
        os.close(fd)
        try:
            self.ws.save(path)
            model = open(path, "rb").read()
        finally:
            os.unlink(path)
        return {MODEL: json.dumps({"counts": self.counts}).encode() + b"\n" + model}

    def _load_state(self, parts: dict[str, bytes]) -> None:
        if MODEL not in parts:
            return
        header, model = parts[MODEL].split(b"\n", 1)
        fd, path = tempfile.mkstemp(suffix=".vw")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(model)
            self.ws.finish()
            self.ws = vowpalwabbit.Workspace(f"--quiet -i {path}")   # the model keeps its arguments
        finally:
            os.unlink(path)
        self.counts = {k: int(v) for k, v in json.loads(header)["counts"].items()}


def _token(name: str) -> str:
    """An expert name as one VW feature token (no spaces, colons or pipes)."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
