"""The context vector x the policy sees: the query embedding plus a few request features.

x = [embedding (dim), 1 (bias), log1p(chars)/10, one-hot modality, hashed hints, media]
Hints are a request's categorical features (`task`, `tenant`, `app`: what kind of product
traffic it is): each `key=value` is hashed into one of HINT_SLOTS indicator slots, so
any hint works without a schema, and a request without hints leaves them all zero.
The media block holds each modality's features (bandit/media_features.py: image,
document, audio, in that order), zero for a modality the request has no part of.
The layout is versioned (FEATURE_VERSION) and logged with every decision, so logged
contexts can be replayed through other policies later.
"""
from __future__ import annotations

import math
import zlib
from typing import Mapping

import numpy as np

from .media_features import MEDIA_BLOCK, MEDIA_DIM

MODALITIES = ("text", "image", "audio", "document")
HINT_SLOTS = 32
FEATURE_VERSION = (f"v3:emb+bias+loglen+modality4+hints{HINT_SLOTS}+"
                   + "+".join(f"{m}{n}" for m, n in MEDIA_BLOCK))
_HEAD = 2 + len(MODALITIES) + HINT_SLOTS


def context_dim(embedding_dim: int) -> int:
    return embedding_dim + _HEAD + MEDIA_DIM


def hint_slot(key: str, value: str) -> int:
    """Where a hint lands: a stable hash (crc32, the same in every process and release)."""
    return zlib.crc32(f"{key}={value}".encode()) % HINT_SLOTS


def build_context(embedding: np.ndarray, query: str, modality: str,
                  hints: Mapping[str, str] | None = None,
                  media: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    """`media`: modality -> its features (media_features.media_features of the request's parts)."""
    extra = np.zeros(_HEAD + MEDIA_DIM, dtype=np.float32)
    extra[0] = 1.0
    extra[1] = math.log1p(len(query)) / 10.0
    if modality in MODALITIES:
        extra[2 + MODALITIES.index(modality)] = 1.0
    for key, value in (hints or {}).items():
        extra[2 + len(MODALITIES) + hint_slot(key, value)] = 1.0
    at = _HEAD
    for m, n in MEDIA_BLOCK:
        if media and m in media:
            extra[at:at + n] = media[m]
        at += n
    return np.concatenate([np.asarray(embedding, dtype=np.float32), extra])
