"""The decision/result/rating join: one reward per decision, reasons for what cannot join."""
from __future__ import annotations

import uuid

import pytest

from common.codec import BadEvent, decode
from feedback import join
from proto import events_pb2

RULES = join.JoinRules(ttl_ms=10_000, grace_ms=1_000, failure_quality=0.0)


def decision(did, mode=events_pb2.DECISION_MODE_ROUTE):
    return events_pb2.DecisionEvent(decision_id=did, chosen_expert="a", context=[0.5, 1.0], propensity=0.9,
                                    cost_weight=2.0, mode=mode, policy_name="linucb", policy_version=3)


def result(did, ok=True, attempt=0, cost=0.1):
    return events_pb2.ExpertResult(decision_id=did, expert="a", ok=ok, attempt=attempt, cost=cost)


def rating(did, q=0.8, rid=None, cost=None):
    r = events_pb2.Rating(decision_id=did, quality=q, rating_id=rid or str(uuid.uuid4()))
    if cost is not None:
        r.cost = cost
    return r


def feed(events, now=0):
    state, rewards, dead = None, [], []
    for kind, ev in events:
        out = join.apply(state, kind, ev, now, RULES)
        state = out.state
        rewards += out.rewards
        dead += [r for r, _ in out.dead]
    return state, rewards, dead


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 1, 0), (1, 2, 0), (2, 0, 1)])
def test_one_reward_in_any_order(order):
    did = str(uuid.uuid4())
    evs = [(join.DECISION, decision(did)), (join.RESULT, result(did)), (join.RATING, rating(did))]
    state, rewards, dead = feed([evs[i] for i in order])
    assert len(rewards) == 1 and not dead
    r = rewards[0]
    assert (r.expert, r.quality, r.cost, r.reward) == ("a", 0.8, 0.1, pytest.approx(0.8 - 2.0 * 0.1))
    assert list(r.context) == [0.5, 1.0] and r.propensity == pytest.approx(0.9)
    assert state.rewarded and not state.decision.context   # context dropped once learned


def test_duplicates_change_nothing_but_resend_the_same_reward():
    """A redelivered event (the app died after saving the state, maybe before the reward it
    sent was written) sends the reward again, identical: the learner applies it once."""
    did = str(uuid.uuid4())
    rt = rating(did)
    evs = [(join.DECISION, decision(did)), (join.RATING, rt), (join.RATING, rt), (join.RESULT, result(did)),
           (join.RESULT, result(did)), (join.DECISION, decision(did))]
    state, rewards, dead = feed(evs)
    assert not dead and len(rewards) == 3       # once when complete, again for each of the two repeats
    assert {r.SerializeToString() for r in rewards} == {rewards[0].SerializeToString()}
    assert state.reward == rewards[0] and list(state.reward.context) == [0.5, 1.0]


def test_duplicates_before_the_reward_send_nothing():
    did = str(uuid.uuid4())
    rt = rating(did)
    _, rewards, dead = feed([(join.DECISION, decision(did)), (join.RATING, rt), (join.RATING, rt),
                             (join.DECISION, decision(did))])
    assert rewards == [] and dead == []


def test_second_distinct_rating_is_dead_lettered():
    did = str(uuid.uuid4())
    _, rewards, dead = feed([(join.DECISION, decision(did)), (join.RESULT, result(did)),
                             (join.RATING, rating(did)), (join.RATING, rating(did, 0.1))])
    assert len(rewards) == 1 and dead == ["decision already rated; only the first rating counts"]


def test_failed_expert_is_rewarded_without_waiting_and_fallback_rating_is_accepted():
    did = str(uuid.uuid4())
    _, rewards, dead = feed([(join.DECISION, decision(did)), (join.RESULT, result(did, ok=False, cost=0.0)),
                             (join.RESULT, result(did, attempt=1)), (join.RATING, rating(did))])
    assert len(rewards) == 1 and rewards[0].expert_failed and rewards[0].quality == 0.0 and not dead


def test_decide_mode_takes_cost_from_the_rating():
    did = str(uuid.uuid4())
    _, rewards, _ = feed([(join.DECISION, decision(did, events_pb2.DECISION_MODE_DECIDE)),
                          (join.RATING, rating(did, 1.0, cost=0.25))])
    assert rewards[0].cost == 0.25 and rewards[0].reward == pytest.approx(1.0 - 2.0 * 0.25)


def test_unknown_decision_is_dead_lettered_after_the_grace_period():
    did = str(uuid.uuid4())
    state, _, _ = feed([(join.RATING, rating(did))], now=0)
    assert join.due_at(state, RULES) > 500
    assert join.apply(state, join.SWEEP, None, 500, RULES).state is not None
    assert join.due_at(state, RULES) <= 1_000
    out = join.apply(state, join.SWEEP, None, 1_000, RULES)
    assert out.state is None and out.dead[0][0].startswith("unknown decision_id")


def test_expired_decision_turns_late_ratings_into_dead_letters():
    did = str(uuid.uuid4())
    state, _, _ = feed([(join.DECISION, decision(did)), (join.RESULT, result(did))], now=0)
    assert join.due_at(state, RULES) <= 10_000
    tomb = join.apply(state, join.SWEEP, None, 10_000, RULES).state
    assert tomb.expired and not tomb.decision.context
    out = join.apply(tomb, join.RATING, rating(did), 10_001, RULES)
    assert not out.rewards and out.dead[0][0].startswith("expired decision_id")
    assert join.apply(tomb, join.SWEEP, None, 20_000, RULES).state is None


@pytest.mark.parametrize("kind, ev, message", [
    (join.RATING, rating("not-a-uuid"), "is not a UUID"),
    (join.RATING, rating(str(uuid.uuid4()), q=1.5), "quality must be in"),
    (join.RATING, rating(str(uuid.uuid4()), q=float("nan")), "quality must be finite"),
    (join.RATING, rating(str(uuid.uuid4()), cost=-1.0), "cost must be in"),
    (join.RESULT, result(str(uuid.uuid4()), cost=float("inf")), "cost must be finite"),
    (join.DECISION, events_pb2.DecisionEvent(decision_id=str(uuid.uuid4())), "without chosen_expert"),
])
def test_invalid_events_are_rejected_with_a_reason(kind, ev, message):
    with pytest.raises(BadEvent, match=message):
        join.validate(kind, ev)


def test_a_rewarded_state_shrinks_and_drops_its_reward_after_the_redelivery_window():
    did = str(uuid.uuid4())
    rules = join.JoinRules(ttl_ms=10_000, grace_ms=1_000, failure_quality=0.0, keep_reward_ms=2_000)
    d = decision(did)
    d.probabilities["a"] = 1.0
    d.scores["a"].estimated_quality = 0.5
    res = result(did)
    res.answer = "a long answer " * 100
    state = None
    for kind, ev in [(join.DECISION, d), (join.RESULT, res), (join.RATING, rating(did))]:
        state = join.apply(state, kind, ev, 0, rules).state
    assert state.HasField("reward") and not state.result.answer
    assert not state.decision.context and not state.decision.probabilities and not state.decision.scores
    assert join.due_at(state, rules) == 2_000                 # the reward's window ends before the TTL
    again = join.apply(state, join.RATING, state.rating, 1_000, rules)
    assert again.duplicate and len(again.rewards) == 1        # inside the window: sent again
    swept = join.apply(state, join.SWEEP, None, 2_000, rules).state
    assert swept.rewarded and not swept.HasField("reward") and join.due_at(swept, rules) == 10_000
    late = join.apply(swept, join.RATING, swept.rating, 3_000, rules)
    assert late.duplicate and late.rewards == []              # after it: the ids still dedupe, nothing is sent
    assert len(swept.SerializeToString()) < 400


def test_ratings_decode_from_protobuf_or_the_json_mapping():
    did, rid = str(uuid.uuid4()), str(uuid.uuid4())
    proto = rating(did, q=0.7, rid=rid)
    camel = f'{{"ratingId": "{rid}", "decisionId": "{did}", "quality": 0.7, "cost": 0.02}}'.encode()
    snake = f' {{"rating_id": "{rid}", "decision_id": "{did}", "quality": 0.7}}'.encode()
    assert decode(proto.SerializeToString(), events_pb2.Rating, json_ok=True) == proto
    from_json = decode(camel, events_pb2.Rating, json_ok=True)
    assert (from_json.decision_id, from_json.quality, from_json.cost) == (did, 0.7, 0.02)
    assert decode(snake, events_pb2.Rating, json_ok=True).rating_id == rid
    assert join.validate(join.RATING, from_json) == did
    for bad, reason in ((b'{"decisionId": 7}', "undecodable Rating JSON"),
                        (b'{"qualty": 1}', "undecodable Rating JSON"),
                        (b'{"quality": "high"', "undecodable Rating JSON")):
        with pytest.raises(BadEvent, match=reason):
            decode(bad, events_pb2.Rating, json_ok=True)
    with pytest.raises(BadEvent, match="undecodable Rating: "):       # other topics stay protobuf only
        decode(camel, events_pb2.Rating)


@pytest.mark.parametrize("order", ["decision first", "rating first", "both ratings first"])
def test_a_rating_from_another_tenant_is_dead_lettered_and_the_owner_still_rates(order):
    did = str(uuid.uuid4())
    d = decision(did)
    d.tenant = "acme"
    foreign, own = rating(did, q=0.0), rating(did, q=0.9)
    foreign.tenant, own.tenant = "globex", "acme"
    events = [(join.DECISION, d), (join.RESULT, result(did)), (join.RATING, foreign), (join.RATING, own)]
    if order == "rating first":
        events = [events[2], events[0], events[1], events[3]]
    elif order == "both ratings first":       # Kafka orders a partition, not the three topics
        events = [events[2], events[3], events[0], events[1]]
    state, rewards, dead = feed(events)
    assert dead == ["tenant 'globex' may not rate a decision of tenant 'acme'"]
    assert [r.quality for r in rewards] == [0.9]
    unchecked = rating(str(uuid.uuid4()))                   # no tenant on the rating: auth off
    d2 = decision(unchecked.decision_id)
    d2.tenant = "acme"
    _, rewards, dead = feed([(join.DECISION, d2), (join.RESULT, result(d2.decision_id)), (join.RATING, unchecked)])
    assert len(rewards) == 1 and dead == []


def test_ratings_before_their_decision_wait_for_it_and_the_first_admissible_counts():
    did = str(uuid.uuid4())
    d = decision(did)
    d.tenant = "acme"
    ratings = [rating(did, q=q) for q in (0.2, 0.4, 0.6)]
    ratings[0].tenant, ratings[1].tenant = "globex", "acme"     # the third has no tenant: auth off
    _, rewards, dead = feed([(join.RATING, r) for r in ratings] + [(join.RATING, ratings[1]),   # a redelivery
                                                                    (join.DECISION, d), (join.RESULT, result(did))])
    assert [r.quality for r in rewards] == [0.4]
    assert dead == ["tenant 'globex' may not rate a decision of tenant 'acme'", join.ALREADY_RATED]
    # No decision within the grace period: every held rating is a dead letter, none lost silently.
    lone = str(uuid.uuid4())
    held = [rating(lone, q=q) for q in [0.1] * (join.MAX_WAITING + 3)]
    state, _, dead = feed([(join.RATING, r) for r in held])
    assert len(state.waiting) == join.MAX_WAITING and dead == [join.ALREADY_RATED] * 2
    out = join.apply(state, join.SWEEP, None, state.first_seen_ms + RULES.grace_ms, RULES)
    assert out.state is None and len(out.dead) == join.MAX_WAITING + 1
    assert {reason for reason, _ in out.dead} == {"unknown decision_id: no decision arrived within the grace period"}
