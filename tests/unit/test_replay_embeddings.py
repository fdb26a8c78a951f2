"""Replay contexts: embedded in chunks with progress lines, cached, and the same as live routing's."""
from __future__ import annotations

import json

import numpy as np

import pytest

from bandit.context import HINT_SLOTS, MODALITIES, build_context, context_dim, hint_slots
from common.dataset import RoutingDataset
from simulations.embeddings import contexts


def test_a_new_data_set_is_embedded_with_progress_then_read_from_the_cache(tmp_path, monkeypatch, embedder):
    monkeypatch.setenv("BR_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "tiny.jsonl"
    prompts = ["What is 2 + 2?", "Name the capital of Peru.", "Write a haiku about rain."]
    path.write_text("".join(json.dumps({"id": f"q{i}", "prompt": p, "outcomes": {"x": {"quality": 1, "cost": 1}}})
                            + "\n" for i, p in enumerate(prompts)))
    (tmp_path / "tiny.meta.json").write_text(json.dumps({"name": "tiny", "premium": "x", "experts": {"x": {}}}))
    ds = RoutingDataset.load(path)
    lines: list[str] = []
    x, emb, _ = contexts(ds, log=lines.append, chunk=2)
    assert [ln.split(" queries")[0].strip() for ln in lines] == ["embedded 2/3", "embedded 3/3"]
    assert x.shape == (3, context_dim(embedder.dim))
    live = np.stack([build_context(embedder.encode([p])[0], p, "text") for p in prompts])
    np.testing.assert_allclose(x, live, atol=1e-5)          # the features the router would compute
    again: list[str] = []
    x2, _, _ = contexts(ds, log=again.append)
    assert again == [] and np.array_equal(x, x2)            # cached: no second embedding
    hinted, _, _ = contexts(ds, hints=("task",))            # rows without a task field pass no hint
    np.testing.assert_array_equal(hinted, x)
    with pytest.raises(ValueError, match=r"hints \['app'\]: a row can pass only \['task'\]"):
        contexts(ds, hints=("app",))


def test_hints_are_hashed_into_their_own_slots():
    emb = np.zeros(4)
    plain = build_context(emb, "q", "text")
    hinted = build_context(emb, "q", "text", {"task": "mmlu", "app": "tutor"})
    assert len(plain) == len(hinted) == context_dim(4)
    slots = slice(4 + 2 + len(MODALITIES), 4 + 2 + len(MODALITIES) + HINT_SLOTS)   # after emb, bias, length, modality
    outside = np.ones(len(plain), bool)
    outside[slots] = False
    assert np.array_equal(plain[outside], hinted[outside]) and not plain[slots].any()
    assert set(np.flatnonzero(hinted[slots])) == hint_slots("task", "mmlu") | hint_slots("app", "tutor")
    assert hint_slots("task", "mmlu") == {3512842751 % HINT_SLOTS, 3798543417 % HINT_SLOTS}   # crc32: the same in every process
    assert len(hint_slots("task", "mmlu")) == 2
