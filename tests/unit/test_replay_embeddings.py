"""Replay contexts: embedded in chunks with progress lines, cached, and the same as live routing's."""
from __future__ import annotations

import json

import numpy as np

from bandit.context import build_context
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
    assert x.shape == (3, embedder.dim + 6)
    live = np.stack([build_context(embedder.encode([p])[0], p, "text") for p in prompts])
    np.testing.assert_allclose(x, live, atol=1e-5)          # the features the router would compute
    again: list[str] = []
    x2, _, _ = contexts(ds, log=again.append)
    assert again == [] and np.array_equal(x, x2)            # cached: no second embedding
