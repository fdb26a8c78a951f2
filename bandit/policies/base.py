"""The one interface every routing policy implements, and the registry that names them.

The same policy objects run in the router (select), the learner (update, parts) and the
replay simulator. A policy is built from a frozen, validated hyperparameter dataclass
(`Params`) and holds only numbers; randomness comes from a seeded numpy Generator.

Snapshots are split into named parts so that learner shards can publish the arms they
own: `ArmPolicy` (disjoint arms) keeps one part per expert plus the shared "__meta__"
part; a policy with one shared model (VW, neural-linear) keeps one part beside it.
"""
from __future__ import annotations

import io
import json
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, fields
from typing import ClassVar, Mapping, NamedTuple, Sequence

import numpy as np

META = "__meta__"


class Score(NamedTuple):
    """Why an expert scored what it did (a tuple: built for every expert on every request)."""

    estimated_quality: float = 0.0
    estimated_cost: float = 0.0
    exploration_bonus: float = 0.0
    score: float = 0.0


@dataclass(frozen=True)
class Choice:
    expert: str
    propensity: float                 # p(expert | x) under the policy's own randomisation
    probabilities: dict[str, float]   # p(a | x) for every eligible expert, sums to 1
    scores: dict[str, Score] = field(default_factory=dict)


@dataclass(frozen=True)
class PolicyParams:
    """Base of every policy's hyperparameters; subclasses add fields and checks."""

    # Fields that say where the policy runs, not what it learned (e.g. a torch device):
    # a snapshot taken under other values of these still loads.
    RUNTIME: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        pass

    def require_unit(self, *names: str) -> None:
        """Raise when a named field (a probability, e.g. epsilon) is outside [0, 1]."""
        for name in names:
            value = getattr(self, name)
            if not (0.0 <= value <= 1.0):
                raise ValueError(f"{name} must be in [0, 1], got {value}")

    @classmethod
    def from_dict(cls, raw: dict | None) -> "PolicyParams":
        raw = dict(raw or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"{cls.__qualname__}: unknown hyperparameters {unknown}; known: {sorted(known)}")
        return cls(**raw)


class Policy(ABC):
    name: ClassVar[str]
    Params: ClassVar[type[PolicyParams]] = PolicyParams

    def __init__(self, dim: int, params: PolicyParams | dict | None = None, seed: int | None = None):
        if dim < 1:
            raise ValueError(f"context dimension must be >= 1, got {dim}")
        self.dim = dim
        self.params = params if isinstance(params, PolicyParams) else self.Params.from_dict(params)
        self.rng = np.random.default_rng(seed)
        self.counts: dict[str, int] = {}   # updates learned per expert

    # -- routing -----------------------------------------------------------------
    def select(self, context: np.ndarray, eligible: Sequence[str], cost_weight: float = 0.0,
               prices: Mapping[str, float] | None = None) -> Choice:
        """Pick an expert for `context` among `eligible`. `prices`: what the catalog says
        each expert will cost on this query, known before any call; a policy that models
        cost uses it for an expert it has no reward from yet (so a high cost weight calls
        the cheapest expert from the first query). Missing or 0 means unknown."""
        if not eligible:
            raise ValueError("no eligible experts")
        eligible = list(eligible)
        context = self._check_context(context)
        return self._select(context, eligible, float(cost_weight), self._check_prices(prices, eligible))

    @abstractmethod
    def _select(self, context: np.ndarray, eligible: list[str], cost_weight: float,
                prices: np.ndarray) -> Choice:
        """`prices`: per eligible expert, its catalog price, 0 where unknown."""

    def select_many(self, contexts: Sequence[np.ndarray], eligible: Sequence[str], cost_weights: Sequence[float],
                    prices: Sequence[Mapping[str, float] | None]) -> list[Choice]:
        """select for several requests with the same eligible experts, in order: the
        router scores together the requests whose embeddings came back together. Each
        choice is drawn as select would draw it; a policy that reads its state once for
        the whole batch overrides _select_many."""
        if not eligible:
            raise ValueError("no eligible experts")
        eligible = list(eligible)
        xs = np.stack([self._check_context(c) for c in contexts])
        return self._select_many(xs, eligible, [float(w) for w in cost_weights],
                                 np.stack([self._check_prices(p, eligible) for p in prices]))

    def _select_many(self, contexts: np.ndarray, eligible: list[str], cost_weights: list[float],
                     prices: np.ndarray) -> list[Choice]:
        """`contexts`: one row per request; `prices`: one row per request."""
        return [self._select(x, eligible, w, p) for x, w, p in zip(contexts, cost_weights, prices)]

    # -- learning ----------------------------------------------------------------
    def update(self, expert: str, context: np.ndarray, quality: float, cost: float = 0.0) -> None:
        self._update(expert, self._check_context(context), float(quality), float(cost))
        self.counts[expert] = self.counts.get(expert, 0) + 1

    @abstractmethod
    def _update(self, expert: str, context: np.ndarray, quality: float, cost: float) -> None: ...

    def pretrain(self, contexts: np.ndarray, quality: np.ndarray, cost: np.ndarray, experts: list[str]) -> None:
        """Warm start from labelled queries (every expert's outcome on each): every outcome
        learned, query by query. A policy that can use seeing them all at once overrides it."""
        for i, x in enumerate(contexts):
            for k, expert in enumerate(experts):
                self.update(expert, x, float(quality[i, k]), float(cost[i, k]))

    # -- snapshots ---------------------------------------------------------------
    # A snapshot is named parts: META (the settings, checked on load) plus the policy's
    # own. part_of() says which part an update to an expert changes, so that learner
    # shards can each publish what they own.
    @abstractmethod
    def part_of(self, expert: str) -> str: ...

    @abstractmethod
    def _state_parts(self, experts: Sequence[str] | None) -> dict[str, bytes]:
        """Serialized learned state: the parts of `experts` (all when None)."""

    @abstractmethod
    def _load_state(self, parts: dict[str, bytes]) -> None:
        """Load serialized parts (META already checked and removed)."""

    def parts(self, experts: Sequence[str] | None = None) -> dict[str, bytes]:
        """The meta part plus the parts of `experts` (all when None)."""
        return {META: self._meta(), **self._state_parts(experts)}

    def load_parts(self, parts: dict[str, bytes]) -> None:
        """Load serialized parts; the meta part is checked first, before any state changes."""
        if META in parts:
            self._check_meta(json.loads(parts[META]))
        self._load_state({k: v for k, v in parts.items() if k != META})

    def _meta(self) -> bytes:
        return json.dumps({"policy": self.name, "dim": self.dim, "params": asdict(self.params)}).encode()

    def _check_meta(self, meta: dict) -> None:
        mine = json.loads(json.dumps(asdict(self.params)))
        theirs = dict(meta["params"])
        for key in self.params.RUNTIME:
            mine.pop(key, None)
            theirs.pop(key, None)
        if meta["policy"] != self.name or meta["dim"] != self.dim or theirs != mine:
            raise ValueError(f"snapshot is {meta['policy']} at dim {meta['dim']} with {meta['params']}; "
                             f"this policy is {self.name} at dim {self.dim} with {mine}: "
                             "routers and learners must run the same policy settings")

    def snapshot(self) -> bytes:
        return _pack({k: np.frombuffer(v, dtype=np.uint8) for k, v in self.parts().items()})

    def restore(self, blob: bytes) -> None:
        self.load_parts({k: v.tobytes() for k, v in _unpack(blob).items()})

    # -- helpers -----------------------------------------------------------------
    def _check_context(self, context: np.ndarray) -> np.ndarray:
        x = np.asarray(context, dtype=np.float64).reshape(-1)
        if x.shape[0] != self.dim:
            raise ValueError(f"context has {x.shape[0]} features, policy expects {self.dim}")
        if not np.all(np.isfinite(x)):
            raise ValueError("context has non-finite values")
        return x

    @staticmethod
    def _check_prices(prices: Mapping[str, float] | None, eligible: list[str]) -> np.ndarray:
        out = np.array([float((prices or {}).get(e, 0.0)) for e in eligible])
        if not np.all(np.isfinite(out)) or np.any(out < 0):
            raise ValueError(f"prices must be finite and >= 0, got {dict(zip(eligible, out.tolist()))}")
        return out

    def _epsilon_probabilities(self, eligible: list[str], best: str, epsilon: float) -> dict[str, float]:
        """epsilon-greedy mixing: every eligible expert keeps at least epsilon/K."""
        k = len(eligible)
        return {e: epsilon / k + (1.0 - epsilon) * (e == best) for e in eligible}

    def _draw(self, probabilities: dict[str, float]) -> str:
        names = list(probabilities)
        cdf = np.cumsum(np.fromiter(probabilities.values(), dtype=np.float64))
        i = int(np.searchsorted(cdf, self.rng.random() * cdf[-1], side="right"))
        return names[min(i, len(names) - 1)]

    def _argmax(self, eligible: list[str], values: np.ndarray) -> str:
        """Argmax with ties broken at random (so untried experts are not ordered by name)."""
        best = np.flatnonzero(values >= values.max() - 1e-12)
        return eligible[int(best[0] if len(best) == 1 else self.rng.choice(best))]


class ArmPolicy(Policy):
    """A policy with one independent model per expert: one snapshot part per expert, so
    each learner shard publishes the arms of the experts whose rewards it reads."""

    def part_of(self, expert: str) -> str:
        return expert

    @abstractmethod
    def known_experts(self) -> list[str]: ...

    @abstractmethod
    def _arm_state(self, expert: str) -> dict[str, np.ndarray]: ...

    @abstractmethod
    def _load_arm(self, expert: str, state: dict[str, np.ndarray]) -> None: ...

    def _state_parts(self, experts):
        names = self.known_experts() if experts is None else experts
        return {e: _pack({**self._arm_state(e), "_updates": np.array(self.counts.get(e, 0))}) for e in names}

    def _load_state(self, parts):
        for name, blob in parts.items():
            state = _unpack(blob)
            self.counts[name] = int(state.pop("_updates", 0))
            self._load_arm(name, state)


def _pack(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _unpack(blob: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


POLICIES: dict[str, type[Policy]] = {}


def register(cls: type[Policy]) -> type[Policy]:
    if cls.name in POLICIES:
        raise ValueError(f"policy {cls.name!r} registered twice")
    POLICIES[cls.name] = cls
    return cls


def make_policy(name: str, dim: int, params: dict | None = None, seed: int | None = None) -> Policy:
    try:
        cls = POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; registered: {sorted(POLICIES)}") from None
    return cls(dim, params, seed)
