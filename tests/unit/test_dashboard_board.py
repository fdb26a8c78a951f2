"""The dashboard's board: events folded into buckets, shares, running means against
always-premium (switch-DR), percentiles, version changes and the last decisions' score parts."""
from __future__ import annotations

import pytest

from proto import events_pb2
from router_svc.dashboard import Board

T0 = 1_700_000_000_000   # a bucket boundary for 10 s buckets


def decision(did: str, ts: int, chosen: str, version: int = 1, propensity: float = 0.5) -> events_pb2.DecisionEvent:
    ev = events_pb2.DecisionEvent(decision_id=did, ts_ms=ts, chosen_expert=chosen, propensity=propensity,
                                  policy_name="pooled_linucb", policy_version=version, cost_weight=2.0,
                                  prices={"big": 0.01, "small": 0.001}, probabilities={"big": 0.5, "small": 0.5})
    ev.scores["big"].CopyFrom(events_pb2.ScoreParts(estimated_quality=0.9, estimated_cost=0.01, score=0.88))
    ev.scores["small"].CopyFrom(events_pb2.ScoreParts(estimated_quality=0.8, estimated_cost=0.001,
                                                      exploration_bonus=0.1, score=0.898))
    return ev


def test_the_board_folds_events_into_what_the_page_draws():
    board = Board(lambda: "big", bucket_s=10, window_s=60)
    board.add_decision(decision("a", T0 + 1_000, "big"))
    board.add_decision(decision("b", T0 + 2_000, "small"))
    board.add_decision(decision("c", T0 + 3_000, "small"))
    board.add_decision(decision("d", T0 + 12_000, "small", version=2))
    for did, expert, ts, ok, fallback in (("a", "big", T0 + 1_500, True, False), ("b", "small", T0 + 4_000, False, False),
                                          ("b", "big", T0 + 5_000, True, True), ("d", "small", T0 + 13_000, True, False)):
        board.add_result(events_pb2.ExpertResult(decision_id=did, expert=expert, ok=ok, fallback=fallback,
                                                 latency_s=(ts % 10_000) / 1000, ts_ms=ts))
    board.add_result(events_pb2.ExpertResult(decision_id="d", expert="small", partial=True, seq=1, ts_ms=T0 + 12_500))
    board.add_reward(events_pb2.RewardEvent(decision_id="a", expert="big", quality=1.0, cost=0.01, propensity=0.5,
                                            ts_ms=T0 + 6_000))
    board.add_reward(events_pb2.RewardEvent(decision_id="b", expert="small", quality=0.0, cost=0.0, propensity=0.5,
                                            ts_ms=T0 + 7_000))
    board.add_reward(events_pb2.RewardEvent(decision_id="d", expert="small", quality=1.0, cost=0.001,
                                            propensity=0.5, ts_ms=T0 + 14_000))
    board.add_dead_letter(events_pb2.DeadLetter(source_topic="feedback.ratings", reason="quality must be in [0, 1]",
                                                component="feedback", ts_ms=T0 + 15_000))
    snap = board.snapshot(now=T0 + 20_000)

    assert snap["t"] == [T0 / 1000, T0 / 1000 + 10]
    assert snap["share"] == {"big": [pytest.approx(1 / 3), 0.0], "small": [pytest.approx(2 / 3), 1.0]}
    assert snap["quality"]["router"] == [0.5, pytest.approx(2 / 3)]
    # Switch-DR of always-premium: the policy's 0.9 for "big", corrected where big was chosen
    # (weight 1/0.5): a: 0.9 + 2 * (1.0 - 0.9) = 1.1; b, d: 0.9 each.
    assert snap["quality"]["premium"] == [pytest.approx(1.0), pytest.approx(2.9 / 3)]
    assert snap["cost"]["premium"] == [0.01, 0.01] and snap["cost"]["router"][0] == pytest.approx(0.005)
    assert snap["errors"] == {"fallbacks": [1, 0], "failures": [1, 0], "dead_letters": [0, 1]}
    assert snap["latency"]["expert_p50"][1] == pytest.approx(3.0)
    assert snap["latency"]["end_to_end_p50"][1] == pytest.approx(1.0)
    assert snap["policy_version_series"] == [1, 2] and [v["version"] for v in snap["versions"]] == [1, 2]
    assert snap["totals"]["decisions"] == 4 and snap["totals"]["premium_share"] == 0.25
    latest = snap["recent"][0]
    assert latest["decision_id"] == "d" and latest["answered_by"] == "small" and latest["quality"] == 1.0
    assert list(latest["scores"]) == ["small", "big"]           # by score, the best first
    assert latest["scores"]["small"]["bonus"] == pytest.approx(0.1)
    b = next(r for r in snap["recent"] if r["decision_id"] == "b")
    assert b["answered_by"] == "big" and b["ok"] is True        # the fallback's answer, after the failure
    assert snap["dead_letters"][0]["reason"] == "quality must be in [0, 1]"


def test_old_buckets_leave_the_window():
    board = Board(lambda: "big", bucket_s=10, window_s=30)
    board.add_decision(decision("a", T0, "big"))
    board.add_decision(decision("b", T0 + 100_000, "small"))
    snap = board.snapshot(now=T0 + 100_000)
    assert snap["t"] == [(T0 + 100_000) / 1000] and snap["share"] == {"small": [1.0]}
    assert T0 not in board.buckets                              # evicted, not only hidden


def test_a_rare_premium_pick_does_not_blow_up_the_premium_estimate():
    """A propensity of 0.002 is a weight of 500: beyond SWITCH_TAU the policy's estimate stands alone."""
    board = Board(lambda: "big", bucket_s=10, window_s=60)
    board.add_decision(decision("a", T0, "big", propensity=0.002))
    board.add_reward(events_pb2.RewardEvent(decision_id="a", expert="big", quality=0.0, propensity=0.002, ts_ms=T0))
    assert board.snapshot(now=T0 + 1_000)["totals"]["premium_quality"] == pytest.approx(0.9)


def test_a_result_and_a_rating_that_arrive_before_their_decision_still_land_on_its_row():
    """The feed reads four topics; Kafka orders partitions, not topics, so on a loaded broker
    a decision's result and reward can be read before the decision itself."""
    in_order, early = (Board(lambda: "big", bucket_s=10, window_s=60) for _ in range(2))
    result = events_pb2.ExpertResult(decision_id="a", expert="big", ok=True, latency_s=0.5, ts_ms=T0 + 1_500)
    reward = events_pb2.RewardEvent(decision_id="a", expert="big", quality=1.0, cost=0.01, propensity=0.5,
                                    ts_ms=T0 + 2_000)
    in_order.add_decision(decision("a", T0 + 1_000, "big"))
    in_order.add_result(result)
    in_order.add_reward(reward)
    early.add_reward(reward)
    early.add_result(result)
    early.add_decision(decision("a", T0 + 1_000, "big"))
    a, b = (board.snapshot(now=T0 + 5_000) for board in (in_order, early))
    assert b["recent"][0]["answered_by"] == "big" and b["recent"][0]["quality"] == 1.0
    assert b["recent"] == a["recent"] and b["quality"] == a["quality"] and b["latency"] == a["latency"]
    assert not early._early
