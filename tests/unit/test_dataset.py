"""Routing data sets: any file of the format loads; bad rows are named or skipped and counted."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from common.dataset import BUNDLED, DatasetError, RoutingDataset


def write(tmp_path: Path, rows: list, experts=("x", "y"), premium="y") -> Path:
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    (tmp_path / "d.meta.json").write_text(json.dumps({"name": "d", "premium": premium,
                                                      "experts": {e: {} for e in experts}}))
    return path


def row(i=0, **over):
    r = {"id": f"r{i}", "prompt": "hi", "outcomes": {"x": {"quality": 1, "cost": 0.1}, "y": {"quality": 0, "cost": 1}}}
    r.update(over)
    return r


@pytest.mark.parametrize("bad, message", [
    ("{not json", "line 2: invalid JSON"),
    (row(1, outcomes={"x": {"quality": 1, "cost": 0.1}}), "line 2: missing expert: row 'r1' has no outcome for 'y'"),
    (row(1, outcomes={"x": {"quality": 1, "cost": float("nan")}, "y": {"quality": 1, "cost": 1}}),
     "line 2: bad cost: row 'r1' expert 'x'"),
    (row(1, outcomes={"x": {"quality": 1, "cost": 1}, "y": {"quality": 1, "cost": 1}, "z": {"quality": 1, "cost": 1}}),
     "line 2: unknown expert: row 'r1'"),
    ({"id": "r1", "outcomes": {}}, "line 2: missing field: 'prompt'"),
])
def test_bad_rows_are_named(tmp_path, bad, message):
    path = write(tmp_path, [row(0), bad, row(2)])
    with pytest.raises(DatasetError, match=message):
        RoutingDataset.load(path)
    ds = RoutingDataset.load(path, skip_bad=True)
    assert [r.id for r in ds.rows] == ["r0", "r2"] and sum(ds.skipped.values()) == 1


def test_meta_must_name_a_known_premium(tmp_path):
    with pytest.raises(DatasetError, match="premium expert 'z' is not among"):
        RoutingDataset.load(write(tmp_path, [row()], premium="z"))


def test_meta_mean_costs_are_the_list_prices(tmp_path):
    path = write(tmp_path, [row()])
    meta = tmp_path / "d.meta.json"
    meta.write_text(json.dumps({"premium": "y", "experts": {"x": {"mean_cost": 0.1}, "y": {"mean_cost": 2}}}))
    assert RoutingDataset.load(path).prices == {"x": 0.1, "y": 2.0}
    meta.write_text(json.dumps({"premium": "y", "experts": {"x": {"mean_cost": -1}, "y": {}}}))
    with pytest.raises(DatasetError, match="mean_cost of 'x' must be a number >= 0, got -1"):
        RoutingDataset.load(path)


def test_the_bundled_set_loads_whole():
    ds = RoutingDataset.load(BUNDLED)
    assert ds.name == "llmrouter_9models" and len(ds.rows) == 6108 and len(ds.experts) == 9
    assert ds.premium == "llama-3.1-nemotron-51b-instruct" and set(ds.prices) == set(ds.experts)
    assert all(set(r.outcomes) == set(ds.experts) for r in ds.rows)
    assert len(ds.split("train")) == 5608 and len(ds.split("test")) == 500


def test_gzipped_and_plain_files_load_alike(tmp_path):
    plain = write(tmp_path, [row(0), row(1)])
    packed = tmp_path / "d.jsonl.gz"          # the same meta file, d.meta.json, serves both
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    a, b = RoutingDataset.load(plain), RoutingDataset.load(packed)
    assert a.rows == b.rows and a.experts == b.experts and len(b.rows) == 2


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "nope.jsonl", "nope.jsonl: no such file; pass a routing data set"),
    (lambda d: d / "missing-meta.jsonl", "meta file missing-meta.meta.json is missing beside it; pass"),
    (lambda d: d / "broken.jsonl.gz", "broken.jsonl.gz: unreadable"),
    (lambda d: d / "badmeta.jsonl", "badmeta.meta.json: unreadable meta file"),
], ids=["missing", "no-meta", "not-gzip", "bad-meta"])
def test_missing_or_unreadable_files_are_one_line_errors(tmp_path, make, message):
    (tmp_path / "missing-meta.jsonl").write_text(json.dumps(row()) + "\n")
    (tmp_path / "broken.jsonl.gz").write_bytes(b"this is not gzip")
    (tmp_path / "broken.meta.json").write_text(json.dumps({"premium": "y", "experts": {"x": {}, "y": {}}}))
    (tmp_path / "badmeta.jsonl").write_text(json.dumps(row()) + "\n")
    (tmp_path / "badmeta.meta.json").write_text("{oops")
    with pytest.raises(DatasetError, match=message) as err:
        RoutingDataset.load(make(tmp_path))
    assert "\n" not in str(err.value)
    with pytest.raises(SystemExit, match="^error: ") as gone:     # what the command-line tools print
        RoutingDataset.load_or_exit(make(tmp_path))
    assert "\n" not in str(gone.value)


def test_a_smaller_catalog_keeps_its_experts_and_names_a_premium(tmp_path):
    """`only`: the deployment's catalog; without the premium the dearest kept expert stands in."""
    path = write(tmp_path, [row(i, outcomes={"x": {"quality": 1, "cost": 0.1}, "y": {"quality": 0, "cost": 3},
                                             "z": {"quality": i % 2, "cost": 1}}) for i in range(4)],
                 experts=("x", "y", "z"))
    meta = tmp_path / "d.meta.json"
    meta.write_text(json.dumps({"premium": "y", "experts": {"x": {"mean_cost": 0.1}, "y": {"mean_cost": 2},
                                                            "z": {"mean_cost": 1}}}))
    ds = RoutingDataset.load(path)
    kept = ds.only(["z", "y"])
    assert (kept.experts, kept.premium, kept.prices) == (["y", "z"], "y", {"y": 2.0, "z": 1.0})
    assert all(set(r.outcomes) == {"y", "z"} for r in kept.rows) and len(kept.rows) == 4
    cheap = ds.only(["x", "z"])
    assert (cheap.experts, cheap.premium) == (["x", "z"], "z")
    assert ds.experts == ["x", "y", "z"] and set(ds.rows[0].outcomes) == {"x", "y", "z"}   # the set itself unchanged
    with pytest.raises(DatasetError, match=r"unknown experts \['w'\]; the set has \['x', 'y', 'z'\]"):
        ds.only(["x", "w"])
