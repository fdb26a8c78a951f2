"""The floor a decision is measured against: the embedding model alone, in the bench's
process, on the prompts the bench sends (batch 1 on the serial Decides' own prompts, then
micro-batches of 32 as a loaded router runs them). The routers' backend is measured before
the stack starts and again after it stops; anything else on the machine only slows the
model, so the faster of the two is the floor (two runs on 2 cores, one floor each: 216 and
151 texts/s on the same prompts while the router's rates moved by 5%)."""
from __future__ import annotations

import random
import time

import numpy as np

from bandit.embedder import Embedder
from common.dataset import RoutingDataset


class Queries:
    """Distinct prompts, each handed out once."""

    def __init__(self, data: RoutingDataset, seed: int):
        self.prompts = list(dict.fromkeys(r.prompt for r in data.rows if r.prompt.strip()))
        random.Random(seed).shuffle(self.prompts)

    def take(self, n: int) -> list[str]:
        if n > len(self.prompts):
            raise SystemExit(f"the data set has too few distinct prompts left ({len(self.prompts)} < {n})")
        out, self.prompts = self.prompts[:n], self.prompts[n:]
        return out


def bare_embedding(backend: str, texts: list[str], reference: np.ndarray | None, ref_texts: list[str],
                   single_texts: list[str]) -> dict:
    """`backend`: torch, onnx or onnx-int8, with /N for N texts per forward pass (default the
    backend's own: 8 on torch, the whole micro-batch on CUDA, 1 on ONNX) and, for ONNX, @P
    for P micro-batches at once (default: one per core)."""
    backend_passes, _, parallel = backend.partition("@")
    spec, _, passes = backend_passes.partition("/")
    try:
        emb = Embedder(backend=spec, batch_size=32, forward_batch=int(passes or 0), parallel=int(parallel or 0))
    except Exception as exc:      # a backend whose packages are missing is reported, not fatal
        return {"backend": backend, "unavailable": f"{type(exc).__name__}: {exc}"[:300]}
    emb.encode(["warm up"] * 32)
    single = []
    for text in single_texts:
        t = time.perf_counter()
        emb.encode([text])
        single.append(time.perf_counter() - t)
    t, cpu = time.perf_counter(), time.process_time()
    emb.encode_batches([texts[i:i + 32] for i in range(0, len(texts), 32)])   # as a loaded router gets them
    batched_qps = len(texts) / (time.perf_counter() - t)
    cpu_ms = (time.process_time() - cpu) / len(texts) * 1000
    vectors = emb.encode(ref_texts)
    cos = (vectors * reference).sum(axis=1) if reference is not None else np.ones(len(ref_texts))
    return {"backend": backend, "version": emb.version, "batch1_p50_ms": float(np.median(single) * 1000),
            "batch32_qps": batched_qps, "batch32_cpu_ms": cpu_ms, "cosine_to_torch_min": float(cos.min()),
            "cosine_to_torch_mean": float(cos.mean()), "_vectors": vectors}


BETTER = {"batch1_p50_ms": min, "batch32_qps": max, "batch32_cpu_ms": min}   # a floor's figures, each's better


def faster_floor(first: dict, second: dict) -> dict:
    """One backend measured twice: each figure at its better (the lower time, the higher
    rate), both measurements kept beside it."""
    if "unavailable" in first or "unavailable" in second:
        return first
    floor = {**first, **{k: better(first[k], second[k]) for k, better in BETTER.items()}}
    floor["measured"] = [{k: m[k] for k in BETTER} for m in (first, second)]
    return floor
