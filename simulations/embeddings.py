"""Query embeddings for replays, cached on disk (a data set is embedded once per model)."""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np

from bandit.context import build_context
from bandit.media_features import describe_media
from common.cache import cache_dir
from common.dataset import RoutingDataset


def cache_path(model: str, dataset: RoutingDataset, texts: list[str] | None = None) -> Path:
    """Keyed by the model and every text embedded (a row's prompt, or with a document its text too)."""
    texts = [r.prompt for r in dataset.rows] if texts is None else texts
    key = hashlib.sha256((model + "\0" + "\0".join(texts)).encode()).hexdigest()[:20]
    return cache_dir() / "embeddings" / f"{dataset.name}-{key}.npy"


def row_media(dataset: RoutingDataset, log=print) -> tuple[list[str], list[dict]]:
    """Per row: the text the router would embed and its media features (as live routing
    computes them from the same bytes: bandit.media_features)."""
    texts, feats, t0 = [], [], time.monotonic()
    with_media = sum(bool(r.media) for r in dataset.rows)
    for r in dataset.rows:
        f, text = describe_media(dataset.media_parts(r), r.prompt) if r.media else ({}, r.prompt)
        texts.append(text)
        feats.append(f)
        if r.media and (len(texts) % 500 == 0 or len(texts) == len(dataset.rows)):
            log(f"  media features: row {len(texts)}/{len(dataset.rows)} ({with_media} with media, "
                f"{time.monotonic() - t0:.0f}s)")
    return texts, feats


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
             hints: tuple[str, ...] = (), backend: str = "torch",
             max_seq_length: int | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """The router's context vector for every row (same features as live routing, with
    each row's `hints` fields as the request's hints), the raw embeddings, and the model's
    name. `backend` ("torch", "onnx", "onnx-int8") and `max_seq_length` as the router's
    BR_EMBEDDING_* settings. Embedding a new data set takes minutes on a CPU: it goes in
    chunks, with a progress line after each."""
    stray = sorted(set(hints) - set(HINT_FIELDS))
    if stray:
        raise ValueError(f"hints {stray}: a row can pass only {list(HINT_FIELDS)}")
    from bandit.embedder import Embedder, default_model_path, joint
    from common.media import open_image

    name = model or default_model_path()
    def make() -> Embedder:
        return Embedder(name, batch_size=64, backend=backend, max_seq_length=max_seq_length)

    prompts, media = row_media(dataset, log)
    # ONNX runs one text per pass: int8 vectors no longer depend on their batch-mates, so
    # vectors cached from the passes of 8 before are not reused.
    variant = "" if backend == "torch" and not max_seq_length else \
        f"|{backend}|{max_seq_length or ''}" + ("|1" if backend.startswith("onnx") else "")
    path = cache_path(name + variant, dataset, prompts)
    embedder = None
    if path.exists():
        emb = np.load(path)
    else:
        embedder = make()
        parts, t0 = [], time.monotonic()
        for start in range(0, len(prompts), chunk):
            parts.append(embedder.encode(prompts[start:start + chunk]))
            done, took = start + len(parts[-1]), time.monotonic() - t0
            log(f"  embedded {done}/{len(prompts)} queries ({took:.0f}s, about "
                f"{took / done * (len(prompts) - done):.0f}s left; cached for the next run)")
        emb = np.concatenate(parts) if parts else np.empty((0, embedder.dim), dtype=np.float32)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, emb)
    if any(m.media_type.startswith("image/") for r in dataset.rows for m in r.media):
        embedder = embedder or make()
        if embedder.embeds_images:                    # as the router does: images join the query's vector
            emb = emb.copy()
            for i, r in enumerate(dataset.rows):
                images = [open_image(p, 10**9) for p in dataset.media_parts(r) if p.modality == "image"]
                if images:
                    emb[i] = joint(emb[i], embedder.encode_images(images))
    ctx = np.stack([build_context(e, r.prompt, r.modality, {h: str(getattr(r, h)) for h in hints if getattr(r, h)}, m)
                    for e, r, m in zip(emb, dataset.rows, media)])
    return ctx.astype(np.float64), emb, name + (f" ({backend}{f', {max_seq_length} tokens' if max_seq_length else ''})"
                                                if variant else "")
