"""An expert replayed from a routing data set (the demo and benchmark expert).

The answer's cost and latency are the data set's record for this expert on this query;
the query is found by `metadata["item_id"]` or else by its exact text.
Options: `data` (path to the .jsonl), `outcomes_of` (replay another expert's column;
default: this expert's name), `latency_scale` (sleep latency_s * scale, default 0),
`max_latency_s`, `fail_rate` (answer with an error this often; to exercise fallbacks).
"""
from __future__ import annotations

import asyncio
import hashlib

from proto import events_pb2
from common.dataset import RoutingDataset

from .base import Answer, BackendError, ExpertBackend, collect, estimate_tokens, register

_CACHE: dict[str, RoutingDataset] = {}


def _load(path: str) -> RoutingDataset:
    if path not in _CACHE:   # several replay experts in one process share the parsed file
        _CACHE[path] = RoutingDataset.load(path)
    return _CACHE[path]


@register
class ReplayBackend(ExpertBackend):
    name = "replay"

    def __init__(self, expert):
        super().__init__(expert)
        opts = self.require("data")
        self.data = _load(str(opts["data"]))
        self.column = opts.get("outcomes_of", expert.name)
        if self.column not in self.data.experts:
            raise ValueError(f"expert {expert.name!r}: no outcomes for {self.column!r} in {opts['data']} "
                             f"(it has {self.data.experts})")
        self.latency_scale = float(opts.get("latency_scale", 0.0))
        self.max_latency_s = float(opts.get("max_latency_s", 5.0))
        self.fail_rate = float(opts.get("fail_rate", 0.0))

    async def answer(self, request: events_pb2.ExpertRequest, parts=()) -> Answer:
        return await collect(self.stream(request, parts))

    async def stream(self, request: events_pb2.ExpertRequest, parts=()):
        """The answer word by word, its replayed latency spread over the words."""
        row = self.data.find(request.metadata.get("item_id"), request.query)
        if row is None:
            raise BackendError("query is not in the replayed data set")
        outcome = row.outcomes[self.column]
        if self.fail_rate and _unit_hash(request.request_id) < self.fail_rate:
            raise BackendError("replayed failure (fail_rate)")
        text = f"[{self.expert.name}] answer to {row.id}"
        words = text.split(" ")
        pause = min(outcome.latency_s * self.latency_scale, self.max_latency_s) / len(words) \
            if self.latency_scale and outcome.latency_s else 0.0
        for i, word in enumerate(words):
            if pause:
                await asyncio.sleep(pause)
            yield word if i == len(words) - 1 else word + " "
        yield Answer(text, estimate_tokens(request.query), estimate_tokens(text), outcome.cost)


def _unit_hash(s: str) -> float:
    """A deterministic number in [0, 1) per request: failures repeat on redelivery."""
    return int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "big") / 2**64
