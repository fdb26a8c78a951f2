"""Routing data sets: any file of the format loads; bad rows are named or skipped and counted."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulations.dataset import DatasetError, RoutingDataset

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


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


@pytest.mark.parametrize("name", ["llmrouter_9models", "messplus_energy"])
def test_bundled_sets_load(name):
    ds = RoutingDataset.load(SHARED / f"{name}.jsonl", limit=200)
    assert len(ds.rows) == 200 and ds.premium in ds.experts
    assert all(set(r.outcomes) == set(ds.experts) for r in ds.rows)
