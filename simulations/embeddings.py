"""Query embeddings for replays, cached on disk (a data set is embedded once per model)."""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np

from bandit.context import build_context
from common.cache import cache_dir
from common.dataset import RoutingDataset


def cache_path(model: str, dataset: RoutingDataset) -> Path:
    key = hashlib.sha256((model + "\0" + "\0".join(r.prompt for r in dataset.rows)).encode()).hexdigest()[:20]
    return cache_dir() / "embeddings" / f"{dataset.name}-{key}.npy"


# Row fields a replay may pass as request hints (`--hints task`).
HINT_FIELDS = ("task",)


def parse_hints(spec: str) -> tuple[str, ...]:
    """`--hints task`: the row fields to pass as request hints, checked before any embedding."""
    hints = tuple(h for h in spec.split(",") if h)
    stray = sorted(set(hints) - set(HINT_FIELDS))
    if stray:
        raise SystemExit(f"--hints {spec!r}: rows can pass only {list(HINT_FIELDS)}")
    return hints


def contexts(dataset: RoutingDataset, model: str = "", log=print, chunk: int = 512,
             hints: tuple[str, ...] = ()) -> tuple[np.ndarray, np.ndarray, str]:
    """The router's context vector for every row (same features as live routing, with
    each row's `hints` fields as the request's hints), the raw embeddings, and the model's
    name. Embedding a new data set takes minutes on a CPU: it goes in chunks, with a
    progress line after each."""
    stray = sorted(set(hints) - set(HINT_FIELDS))
    if stray:
        raise ValueError(f"hints {stray}: a row can pass only {list(HINT_FIELDS)}")
    from bandit.embedder import Embedder, default_model_path

    name = model or default_model_path()
    path = cache_path(name, dataset)
    if path.exists():
        emb = np.load(path)
    else:
        embedder, prompts = Embedder(name, batch_size=64), [r.prompt for r in dataset.rows]
        parts, t0 = [], time.monotonic()
        for start in range(0, len(prompts), chunk):
            parts.append(embedder.encode(prompts[start:start + chunk]))
            done, took = start + len(parts[-1]), time.monotonic() - t0
            log(f"  embedded {done}/{len(prompts)} queries ({took:.0f}s, about "
                f"{took / done * (len(prompts) - done):.0f}s left; cached for the next run)")
        emb = np.concatenate(parts) if parts else np.empty((0, embedder.dim), dtype=np.float32)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, emb)
    ctx = np.stack([build_context(e, r.prompt, r.modality, {h: str(getattr(r, h)) for h in hints if getattr(r, h)})
                    for e, r in zip(emb, dataset.rows)])
    return ctx.astype(np.float64), emb, name
