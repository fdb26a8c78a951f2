"""The context vector x the policy sees: the query embedding plus a few request features.

x = [embedding (dim), 1 (bias), log1p(chars)/10, one-hot modality, hashed hints, media]
Hints are a request's categorical features (`task`, `tenant`, `app`: what kind of product
traffic it is): each `key=value` is hashed into two of HINT_SLOTS indicator slots (two
hashes: two hints that share one slot almost never share both, so a policy can tell every
kind of traffic apart, e.g. 14 tasks in 32 slots of one hash collided 4 times), so any
hint works without a schema, and a request without hints leaves them all zero.
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
HINT_SLOTS = 64
FEATURE_VERSION = (f"v4:emb+bias+loglen+modality4+hints{HINT_SLOTS}x2+"
                   + "+".join(f"{m}{n}" for m, n in MEDIA_BLOCK))
_HEAD = 2 + len(MODALITIES) + HINT_SLOTS


def context_dim(embedding_dim: int) -> int:
    return embedding_dim + _HEAD + MEDIA_DIM


def hint_slots(key: str, value: str) -> set[int]:
    """Where a hint lands: two stable hashes (crc32, the same in every process and release)."""
    return {zlib.crc32(f"{key}={value}".encode()) % HINT_SLOTS, zlib.crc32(f"{value}#{key}".encode()) % HINT_SLOTS}


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
        for slot in hint_slots(key, value):
            extra[2 + len(MODALITIES) + slot] = 1.0
    at = _HEAD
    for m, n in MEDIA_BLOCK:
        if media and m in media:
            extra[at:at + n] = media[m]
        at += n
    return np.concatenate([np.asarray(embedding, dtype=np.float32), extra])


def hint_block(dim: int) -> slice | None:
    """Where the hint slots sit in a context of `dim` features built by build_context
    (None when `dim` is too short to be one: a policy then treats every feature alike)."""
    if dim <= _HEAD + MEDIA_DIM:
        return None
    start = dim - MEDIA_DIM - _HEAD + 2 + len(MODALITIES)
    return slice(start, start + HINT_SLOTS)
