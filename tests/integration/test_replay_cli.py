"""The replay command's report: the stable interface other tools read."""
from __future__ import annotations

import json

import numpy as np
import pytest

from simulations import policy_runs, replay

REQUIRED = {"quality", "cost", "premium_share", "aiq", "regret", "premium_share_at_parity",
            "quality_at_premium_share_0.33", "seeds"}


def test_replay_writes_the_documented_report(two_kind_data, tmp_path):
    replay.main(["--data", str(two_kind_data), "--out", str(tmp_path), "--policies", "linucb,epsilon_greedy",
                 "--seeds", "2", "--delay", "4"])
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["dataset"] == "twokind" and report["premium"] == "mathbot"
    assert set(report["always_premium"]) >= {"quality", "cost"}
    pol = report["policies"]
    assert {"linucb", "epsilon_greedy", "random", "oracle", "always:mathbot", "always:triviabot", "knn",
            "threshold"} <= set(pol)
    for name, r in pol.items():
        assert REQUIRED <= set(r), name
        assert r["seeds"] == 2
    assert {n: r["kind"] for n, r in pol.items()} == {
        "linucb": "bandit", "epsilon_greedy": "bandit", "knn": "supervised", "threshold": "supervised",
        "random": "baseline", "oracle": "baseline", "always:mathbot": "baseline", "always:triviabot": "baseline"}
    # The sweep reaches down to the cheapest expert's cost, and the checks read the frontier.
    cheapest = min(pol["always:mathbot"]["cost"], pol["always:triviabot"]["cost"])
    assert min(p["cost"] for p in pol["linucb"]["frontier"]) <= 1.05 * cheapest
    singles = report["checks"]["single_experts"]
    assert set(singles) == {"mathbot", "triviabot"} and singles["mathbot"]["by"] == "linucb"
    assert singles["mathbot"]["ok"] and singles["mathbot"]["best_bandit"] > 0.9
    assert report["checks"]["knn_late"] and all("gap" in c for c in report["checks"]["knn_late"])
    assert pol["oracle"]["quality"] == pytest.approx(1.0)
    assert pol["always:mathbot"]["premium_share"] == 1.0 and pol["always:mathbot"]["quality"] == pytest.approx(0.55)
    # The contextual policy learns the split; the context-free one cannot; the supervised
    # routers, which saw every expert's outcome on the train split, know it outright.
    assert pol["linucb"]["quality"] > 0.9 > pol["epsilon_greedy"]["quality"]
    assert pol["knn"]["quality"] > 0.95 and pol["threshold"]["quality"] > 0.95
    assert pol["linucb"]["premium_share_at_parity"] is not None and pol["linucb"]["premium_share_at_parity"] < 0.7
    curve = pol["linucb"]["quality_curve"]
    assert len(curve) == 50 and curve[-1] == pytest.approx(pol["linucb"]["quality"]) and curve[-1] > curve[0]
    for png in ("frontier.png", "regret.png", "traffic.png"):
        assert (tmp_path / png).stat().st_size > 1000
    md = (tmp_path / "report.md").read_text()
    assert "| linucb | bandit |" in md and "against every single expert" in md and "kNN baseline, second half" in md


def test_hints_reach_the_policies_as_features(two_kind_data, tmp_path):
    """`--hints task` builds the contexts with each row's task (the features themselves are
    checked in test_replay_embeddings); the report records it; a field rows lack is refused."""
    replay.main(["--data", str(two_kind_data), "--out", str(tmp_path), "--policies", "pooled_linucb,grouped_ts",
                 "--seeds", "1", "--hints", "task"])
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["hints"] == ["task"] and report["policies"]["pooled_linucb"]["quality"] > 0.9
    assert report["policies"]["grouped_ts"]["quality"] > 0.9
    # Routing by the task alone is right on every query here, and the checks say so.
    assert report["policies"]["hint_oracle"]["kind"] == "baseline"
    assert report["policies"]["hint_oracle"]["quality"] == pytest.approx(1.0)
    assert all(c["hint_oracle"] == pytest.approx(1.0) for c in report["checks"]["single_experts"].values())
    assert "hint oracle there" in (tmp_path / "report.md").read_text()
    with pytest.raises(SystemExit, match="rows can pass only"):
        replay.main(["--data", str(two_kind_data), "--out", str(tmp_path), "--hints", "tenant"])


def test_replay_rejects_bad_rows_unless_asked_to_skip(tmp_path, two_kind_data, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(two_kind_data.read_text() + '{"id": "x", "prompt": "p", "outcomes": {"mathbot": '
                   '{"quality": 1, "cost": NaN}, "triviabot": {"quality": 1, "cost": 1}}}\n')
    (tmp_path / "bad.meta.json").write_text(two_kind_data.with_name("twokind.meta.json").read_text())
    with pytest.raises(SystemExit, match="^error: bad.jsonl line 601: bad cost: row 'x'"):
        replay.main(["--data", str(bad), "--out", str(tmp_path / "o"), "--seeds", "1", "--policies", "linucb"])
    replay.main(["--data", str(bad), "--out", str(tmp_path / "o"), "--seeds", "1", "--policies", "linucb",
                 "--skip-bad"])
    assert "skipped bad rows: {'bad cost': 1}" in capsys.readouterr().out
    assert json.loads((tmp_path / "o" / "report.json").read_text())["rows"] == 600


def test_replay_refuses_a_set_with_nothing_to_route_between(tmp_path):
    """One expert (nothing to choose) or one row (no kNN baseline): one line, no traceback."""
    one = tmp_path / "one.jsonl"
    one.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"p{i}", "outcomes": {"only": {"quality": 1, "cost": 1}}})
                           + "\n" for i in range(10)))
    (tmp_path / "one.meta.json").write_text(json.dumps({"name": "one", "cost_unit": "usd", "premium": "only",
                                                        "experts": {"only": {}}}))
    with pytest.raises(SystemExit, match="^error: one.jsonl has 1 expert; a router chooses between two or more"):
        replay.main(["--data", str(one), "--out", str(tmp_path / "o")])
    lone = tmp_path / "lone.jsonl"
    lone.write_text(json.dumps({"id": "q", "prompt": "p", "split": "test",
                                "outcomes": {"a": {"quality": 1, "cost": 1}, "b": {"quality": 0, "cost": 1}}}) + "\n")
    (tmp_path / "lone.meta.json").write_text(json.dumps({"name": "lone", "cost_unit": "usd", "premium": "a",
                                                         "experts": {"a": {}, "b": {}}}))
    with pytest.raises(SystemExit, match="too few rows"):
        replay.main(["--data", str(lone), "--out", str(tmp_path / "o")])


def test_a_smaller_catalog_is_replayed_with_its_own_premium(two_kind_data, tmp_path):
    """--experts: the same queries routed between fewer experts; the dropped premium's place
    goes to the dearest kept one, and every baseline and check sees only the kept experts."""
    three = tmp_path / "three" / "twokind.jsonl"          # the same prompts: their embeddings are cached
    three.parent.mkdir()
    with two_kind_data.open() as src, three.open("w") as dst:
        for line in src:
            r = json.loads(line)
            r["outcomes"]["dearbot"] = {"quality": 0.5, "cost": 0.01, "latency_s": 0.01}
            dst.write(json.dumps(r) + "\n")
    meta = json.loads(two_kind_data.with_name("twokind.meta.json").read_text())
    meta["experts"]["dearbot"], meta["premium"] = {}, "dearbot"
    (three.parent / "twokind.meta.json").write_text(json.dumps(meta))
    out = tmp_path / "out"
    replay.main(["--data", str(three), "--out", str(out), "--policies", "linucb", "--seeds", "1",
                 "--experts", "triviabot,mathbot"])
    report = json.loads((out / "report.json").read_text())
    assert report["experts"] == ["mathbot", "triviabot"] and report["premium"] == "mathbot"
    assert not any("dearbot" in name for name in report["policies"])
    assert set(report["checks"]["single_experts"]) == {"mathbot", "triviabot"}
    assert report["policies"]["linucb"]["quality"] > 0.9
    with pytest.raises(SystemExit, match=r"^error: --experts: unknown experts \['gpt9'\]"):
        replay.main(["--data", str(three), "--out", str(out), "--experts", "mathbot,gpt9"])
    with pytest.raises(SystemExit, match="^error: --experts names 1 expert; a router chooses between two or more"):
        replay.main(["--data", str(three), "--out", str(out), "--experts", "mathbot"])


def test_drift_changes_outcomes_from_its_point_on(two_kind_data, tmp_path):
    """mathbot stops being right on math half way: every policy and baseline sees it."""
    replay.main(["--data", str(two_kind_data), "--out", str(tmp_path), "--policies", "linucb", "--seeds", "1",
                 "--drift", "mathbot:-0.9@0.5"])
    report = json.loads((tmp_path / "report.json").read_text())
    pol = report["policies"]
    assert report["drift"] == [[0, -0.9, 0.5]]
    # first half: 1.0 on math, 0.1 on trivia (0.55); second half: 0.1 and 0.0 (0.05)
    assert pol["always:mathbot"]["quality"] == pytest.approx(0.30, abs=0.03)
    assert pol["oracle"]["quality"] < 1.0   # after the drift no expert is right on math


def test_bad_drift_spec_is_named(two_kind_data, tmp_path):
    with pytest.raises(SystemExit, match="expected EXPERT:DELTA@FRACTION"):
        replay.main(["--data", str(two_kind_data), "--out", str(tmp_path), "--drift", "mathbot-0.3"])
    with pytest.raises(SystemExit, match="expert must be one of"):
        replay.main(["--data", str(two_kind_data), "--out", str(tmp_path), "--drift", "gpt9:-0.3@0.5"])


def test_params_override_the_defaults_and_bad_ones_stop_the_run(two_kind_data, tmp_path):
    args = ["--data", str(two_kind_data), "--policies", "linucb", "--seeds", "1"]
    replay.main([*args, "--out", str(tmp_path / "a"), "--params", '{"linucb": {"alpha": 0.0, "epsilon": 0.0}}'])
    replay.main([*args, "--out", str(tmp_path / "b")])
    a, b = (json.loads((tmp_path / d / "report.json").read_text())["policies"]["linucb"] for d in "ab")
    assert a["params"] == {**policy_runs.POLICY_PARAMS["linucb"], "alpha": 0.0, "epsilon": 0.0}
    assert b["params"] == policy_runs.POLICY_PARAMS["linucb"]
    assert a["frontier"] != b["frontier"]          # the override changed what the policy did
    for bad, message in (('{"linucb": {"alpha": -1}}', "alpha must be >= 0"),
                         ('{"linucb": {"alhpa": 1}}', r"unknown hyperparameters \['alhpa'\]"),
                         ('{"lints": {"v": 1}}', "not replayed"),
                         ("[1]", "must map policy names"),
                         ("{nope", "not JSON")):
        with pytest.raises(SystemExit, match=message):
            replay.main([*args, "--out", str(tmp_path / "c"), "--params", bad])


def test_parallel_replay_matches_the_serial_one(two_kind_data, tmp_path):
    args = ["--data", str(two_kind_data), "--policies", "linucb,lints", "--seeds", "2", "--limit", "300"]
    for jobs in ("1", "2"):
        replay.main([*args, "--out", str(tmp_path / jobs), "--jobs", jobs])
    one, two = (json.loads((tmp_path / j / "report.json").read_text())["policies"] for j in "12")
    for name in ("linucb", "lints"):
        assert one[name]["frontier"] == two[name]["frontier"] and one[name]["traffic"] == two[name]["traffic"]


def test_warm_start_learns_the_train_split_first_and_replays_the_rest(two_kind_data, tmp_path):
    args = ["--data", str(two_kind_data), "--policies", "linucb", "--seeds", "2", "--jobs", "1"]
    replay.main([*args, "--out", str(tmp_path / "warm"), "--warm-start"])
    replay.main([*args, "--out", str(tmp_path / "cold")])
    warm, cold = (json.loads((tmp_path / d / "report.json").read_text()) for d in ("warm", "cold"))
    assert warm["warm_start"]["rows"] + warm["rows"] == cold["rows"] == 600 and cold["warm_start"] is None
    w, c = warm["policies"]["linucb"], cold["policies"]["linucb"]
    # Knowing the split from the first query: near-perfect at once, and over as many queries
    # the cold policy regrets far more (it pays for learning what the warm one was taught).
    assert w["quality_curve"][0] > 0.95 > c["quality_curve"][0]
    cold_at_same_length = np.interp(warm["rows"], np.linspace(0, cold["rows"] - 1, 50), c["regret_curve"])
    assert w["regret"] < 0.5 * cold_at_same_length, (w["regret"], cold_at_same_length)
    assert warm["policies"]["always:mathbot"]["quality"] == pytest.approx(0.55, abs=0.1)   # the replayed rows only
