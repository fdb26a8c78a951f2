"""Query embeddings for replays, cached on disk (a data set is embedded once per model)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from bandit.context import build_context
from common.cache import cache_dir
from common.dataset import RoutingDataset


def cache_path(model: str, dataset: RoutingDataset) -> Path:
    key = hashlib.sha256((model + "\0" + "\0".join(r.prompt for r in dataset.rows)).encode()).hexdigest()[:20]
    return cache_dir() / "embeddings" / f"{dataset.name}-{key}.npy"


def contexts(dataset: RoutingDataset, model: str = "") -> tuple[np.ndarray, np.ndarray, str]:
    """The router's context vector for every row (same features as live routing), the raw
    embeddings, and the model's name."""
    from bandit.embedder import Embedder, default_model_path

    name = model or default_model_path()
    path = cache_path(name, dataset)
    if path.exists():
        emb = np.load(path)
    else:
        emb = Embedder(name, batch_size=64).encode([r.prompt for r in dataset.rows])
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, emb)
    ctx = np.stack([build_context(e, r.prompt, r.modality) for e, r in zip(emb, dataset.rows)])
    return ctx.astype(np.float64), emb, name
