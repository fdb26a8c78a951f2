"""The context vector x the policy sees: the query embedding plus a few request features.

x = [embedding (dim), 1 (bias), log1p(chars)/10, one-hot modality]
The layout is versioned (FEATURE_VERSION) and logged with every decision, so logged
contexts can be replayed through other policies later.
"""
from __future__ import annotations

import math

import numpy as np

MODALITIES = ("text", "image", "audio", "document")
FEATURE_VERSION = "v1:emb+bias+loglen+modality4"


def context_dim(embedding_dim: int) -> int:
    return embedding_dim + 2 + len(MODALITIES)


def build_context(embedding: np.ndarray, query: str, modality: str) -> np.ndarray:
    extra = np.zeros(2 + len(MODALITIES), dtype=np.float32)
    extra[0] = 1.0
    extra[1] = math.log1p(len(query)) / 10.0
    if modality in MODALITIES:
        extra[2 + MODALITIES.index(modality)] = 1.0
    return np.concatenate([np.asarray(embedding, dtype=np.float32), extra])
