"""The generated multimodal routing set: real pipelines' outcomes, media in the data set
format, and the replay reading it (image features in the contexts, the split by kind)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from bandit.media_features import MEDIA_DIM
from common.dataset import DatasetError, RoutingDataset
from simulations import multimodal_set, replay
from simulations.embeddings import contexts


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("mm")
    return multimodal_set.build(out, rows=60, seed=3, jobs=2, log=lambda *_: None)


def test_the_pipelines_outcomes_are_real_and_the_premium_is_a_named_stand_in(small_set):
    ds = RoutingDataset.load(small_set)
    meta = json.loads(small_set.with_name("multimodal.meta.json").read_text())
    assert ds.premium == "premium_vision" and len(ds.rows) == 60
    assert "STAND-IN" in meta["experts"]["premium_vision"]["pipeline"]
    assert meta["experts"]["premium_vision"]["stated_accuracy"]["chart"] == multimodal_set.PREMIUM_ACCURACY["chart"]
    rows = [json.loads(line) for line in small_set.read_text().splitlines()]
    by_kind: dict[str, list] = {}
    for r in rows:
        by_kind.setdefault(r["task"], []).append(r)
        assert r["media"][0]["media_type"] == "image/png" and (small_set.parent / r["media"][0]["path"]).is_file()
        for e in multimodal_set.PIPELINES:     # each pipeline outcome is its recorded answer, scored
            assert r["outcomes"][e]["quality"] == float(multimodal_set.correct(r["pipeline_answers"][e], r["answer"]))
    mean = lambda kind, e: np.mean([r["outcomes"][e]["quality"] for r in by_kind[kind]])   # noqa: E731
    assert mean("receipt", "ocr_pipeline") > 0.6 and mean("shapes", "shape_detector") > 0.7
    assert mean("chart", "ocr_pipeline") == mean("chart", "shape_detector") == 0.0     # only the premium reads charts
    assert mean("shapes", "ocr_pipeline") == 0.0


def test_replay_reads_the_media_and_reports_who_answers_what(small_set, tmp_path):
    ds = RoutingDataset.load(small_set)
    x, _, _ = contexts(ds, log=lambda *_: None)
    media = x[:, -MEDIA_DIM:]
    assert (np.abs(media[:, :8]).sum(axis=1) > 0).all() and not media[:, 8:].any()   # image block only
    replay.main(["--data", str(small_set), "--out", str(tmp_path), "--policies", "pooled_linucb", "--seeds", "1"])
    report = json.loads((tmp_path / "report.json").read_text())
    split = report["policies"]["knn"]["late_traffic_by_task"]
    assert set(split) == {"receipt", "sign", "shapes", "chart", "field"}
    assert all(abs(sum(s.values()) - 1.0) < 1e-9 for s in split.values())
    assert "## Who answers what" in (tmp_path / "report.md").read_text()


def test_a_missing_or_escaping_media_file_is_named(small_set, tmp_path):
    lines = small_set.read_text().splitlines()
    bad = json.loads(lines[0])
    bad["media"][0]["path"] = "../outside.png"
    (tmp_path / "multimodal.jsonl").write_text(json.dumps(bad) + "\n")
    (tmp_path / "multimodal.meta.json").write_text(small_set.with_name("multimodal.meta.json").read_text())
    with pytest.raises(DatasetError, match="line 1: bad media: row 'mm/0': path '../outside.png' must be relative"):
        RoutingDataset.load(tmp_path / "multimodal.jsonl")
    bad["media"][0]["path"] = "images/none.png"
    (tmp_path / "multimodal.jsonl").write_text(json.dumps(bad) + "\n")
    ds = RoutingDataset.load(tmp_path / "multimodal.jsonl")
    with pytest.raises(DatasetError, match="row 'mm/0': media: .*none.png"):
        ds.media_parts(ds.rows[0])
