"""Off-policy evaluation on logged decisions: export from Kafka, estimates, bad logs."""
from __future__ import annotations

import json
import uuid

import numpy as np
import pytest

from common.kafka import make_producer
from common.settings import InfraSettings
from proto import events_pb2
from simulations import logs as logmod
from simulations import offpolicy


def synthetic_log(path, n=3000, seed=0):
    """Uniform logging over a and b; a is right when x0 > 0, b otherwise."""
    rng = np.random.default_rng(seed)
    with path.open("w") as fh:
        for _ in range(n):
            x = rng.standard_normal(4)
            chosen = "a" if rng.random() < 0.5 else "b"
            q = float((x[0] > 0) == (chosen == "a"))
            fh.write(json.dumps({"decision_id": str(uuid.uuid4()), "context": x.tolist(), "chosen_expert": chosen,
                                 "propensity": 0.5, "probabilities": {"a": 0.5, "b": 0.5},
                                 "quality": q, "cost": 0.0, "cost_weight": 0.0}) + "\n")
    return path


def test_estimates_bracket_the_truth_and_rank_a_learner_above_the_logger(tmp_path):
    logs = logmod.load(synthetic_log(tmp_path / "log.jsonl"))
    truth_a = np.mean([r["context"][0] > 0 for r in logs.rows])          # value of "always a"
    fixed = offpolicy.evaluate_logs(logs, "fixed", {"expert": "a"}, n_boot=100)
    for name, est in fixed["candidate"]["estimates"].items():
        assert est["ci"][0] <= truth_a <= est["ci"][1], (name, est, truth_a)
    logging = fixed["logging_policy"]
    for name, est in logging["estimates"].items():
        assert est["ci"][0] <= logging["observed_mean"] <= est["ci"][1], name
    learner = offpolicy.evaluate_logs(logs, "linucb", {"alpha": 0.3, "epsilon": 0.02}, n_boot=100)
    assert learner["candidate"]["estimates"]["snips"]["value"] > logging["observed_mean"] + 0.3


@pytest.mark.parametrize("patch, message", [
    ({"propensity": 0.0}, "line 2: zero propensity"),
    ({"chosen_expert": "c"}, "line 2: unknown expert: 'c'"),
    ({"quality": float("nan")}, "line 2: bad quality"),
    ({"prices": {"a": -1.0}}, "line 2: bad prices"),
])
def test_bad_log_lines_are_named_or_skipped(tmp_path, patch, message):
    good = (tmp_path / "g.jsonl")
    synthetic_log(good, n=3)
    lines = good.read_text().splitlines()
    lines[1] = json.dumps({**json.loads(lines[1]), **patch})
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(logmod.LogError, match=message):
        logmod.load(bad)
    assert len(logmod.load(bad, skip_bad=True).rows) == 2


async def test_export_joins_decisions_and_rewards_from_kafka(stack, prefix, tmp_path):
    producer = make_producer(stack.kafka_bootstrap)
    await producer.start()
    ids = [str(uuid.uuid4()) for _ in range(3)]
    for did in ids:
        d = events_pb2.DecisionEvent(decision_id=did, chosen_expert="a", propensity=0.6, context=[0.1, 0.2],
                                     probabilities={"a": 0.6, "b": 0.4}, policy_name="linucb", cost_weight=0.5,
                                     prices={"a": 0.3, "b": 0.1})
        await producer.send_and_wait(f"{prefix}router.decisions", d.SerializeToString(), key=did.encode())
    for did in ids[:2] + [ids[0], str(uuid.uuid4())]:   # a duplicate, and a reward without a decision
        r = events_pb2.RewardEvent(reward_id=did, decision_id=did, expert="a", quality=1.0, cost=0.2)
        await producer.send_and_wait(f"{prefix}router.rewards", r.SerializeToString(), key=b"a")
    await producer.send_and_wait(f"{prefix}router.rewards", b"\xff garbage")
    await producer.stop()
    out = tmp_path / "logs.jsonl"
    assert await logmod.export(InfraSettings(kafka_bootstrap=stack.kafka_bootstrap, topic_prefix=prefix), out) == 2
    rows = logmod.load(out).rows
    assert {r["decision_id"] for r in rows} == set(ids[:2])
    assert rows[0]["probabilities"] == pytest.approx({"a": 0.6, "b": 0.4}) and rows[0]["cost_weight"] == 0.5
    assert rows[0]["prices"] == pytest.approx({"a": 0.3, "b": 0.1})
