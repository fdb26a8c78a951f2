"""The decision/result/rating join as pure functions over a JoinState (no I/O).

A reward is emitted once per decision, when the decision and its rating are known and,
for ROUTE decisions, the chosen expert's result too (and again, identical, for a
redelivered event); a failed or timed-out expert gets `failure_quality` without waiting
for a rating. Feedback that cannot be joined (unknown
id after a grace period, expired decision, second rating) is dead-lettered with a reason.

Kafka orders events within a topic's partition, not across topics, so ratings can reach
the join before their decision. Whose they are is unknown until it comes: the first
rating is held and later ones wait beside it (up to MAX_WAITING), and when the decision
arrives the first admissible one counts; a stranger's rating that came first does not
crowd out the owner's.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from common.codec import BadEvent, require_finite, require_uuid
from proto import events_pb2

DECISION, RESULT, RATING, SWEEP = "decision", "result", "rating", "sweep"
MAX_WAITING = 16
ALREADY_RATED = "decision already rated; only the first rating counts"


@dataclass
class Outcome:
    state: events_pb2.JoinState | None            # None = delete the key
    rewards: list[events_pb2.RewardEvent] = field(default_factory=list)
    dead: list[tuple[str, bytes]] = field(default_factory=list)   # (reason, payload)
    duplicate: bool = False


def validate(kind: str, ev) -> str:
    """Check an event's fields; returns its decision_id or raises BadEvent."""
    did = require_uuid(ev.decision_id)
    if kind == RATING:
        require_finite(ev.quality, "quality", 0.0, 1.0)
        if ev.HasField("cost"):
            require_finite(ev.cost, "cost", 0.0)
        if not ev.rating_id:
            raise BadEvent("rating without rating_id")
    elif kind == RESULT:
        require_finite(ev.cost, "cost", 0.0)
    elif kind == DECISION:
        if not ev.chosen_expert or not ev.context:
            raise BadEvent("decision without chosen_expert or context")
        require_finite(ev.cost_weight, "cost_weight", 0.0)
    return did


def event_id(kind: str, ev) -> str:
    if kind == RATING:
        return "r:" + ev.rating_id
    if kind == RESULT:
        return f"x:{ev.attempt}"
    return "d"


@dataclass(frozen=True)
class JoinRules:
    ttl_ms: int
    grace_ms: int
    failure_quality: float
    keep_reward_ms: int = 600_000   # a sent reward is kept this long, to be sent again on redelivery


def apply(state: events_pb2.JoinState | None, kind: str, ev, now: int, rules: JoinRules) -> Outcome:
    st = state if state is not None else events_pb2.JoinState(first_seen_ms=now)
    if kind == SWEEP:
        return _sweep(st, now, rules) if state is not None else Outcome(None)
    eid = event_id(kind, ev)
    if eid in st.seen_event_ids:
        # Redelivered (a restart after the state was saved): the reward sent with the first
        # delivery may have been lost with the process, so it is sent again (same reward_id).
        return Outcome(st, rewards=[st.reward] if st.HasField("reward") else [], duplicate=True)
    if st.expired:
        dead = [("expired decision_id: rating arrived after the decision's TTL", ev.SerializeToString())]
        return Outcome(st, dead=dead if kind == RATING else [])
    if kind == RATING and st.rewarded and st.HasField("result") and not st.result.ok:
        st.seen_event_ids.append(eid)   # rates the fallback's answer; the chosen expert failed
        return Outcome(st)
    if kind == RATING and st.HasField("rating") and not st.HasField("decision") and len(st.waiting) < MAX_WAITING:
        st.seen_event_ids.append(eid)            # the held one may turn out a stranger's
        st.waiting.add().CopyFrom(ev)
        return Outcome(st)
    if kind == RATING and (st.HasField("rating") or st.rewarded):
        return Outcome(st, dead=[(ALREADY_RATED, ev.SerializeToString())])
    if kind == RATING and st.HasField("decision") and _foreign(st.decision, ev):
        return Outcome(st, dead=[(_foreign_reason(st.decision, ev), ev.SerializeToString())])
    st.seen_event_ids.append(eid)
    if kind == DECISION:
        st.decision.CopyFrom(ev)
        if st.HasField("rating"):                                 # ratings came first: judge them now
            dead = _judge_early_ratings(st)
            out = _maybe_reward(st, now, rules)
            out.dead = dead + out.dead
            return out
    elif kind == RESULT:
        if ev.attempt != 0:          # fallback answers are served, not learned from
            return Outcome(st)
        st.result.CopyFrom(ev)
        st.result.ClearField("answer")     # the join needs ok and cost, not the answer text
    else:
        st.rating.CopyFrom(ev)
    return _maybe_reward(st, now, rules)


def _foreign(decision: events_pb2.DecisionEvent, rating: events_pb2.Rating) -> bool:
    return bool(rating.tenant) and rating.tenant != decision.tenant


def _foreign_reason(decision: events_pb2.DecisionEvent, rating: events_pb2.Rating) -> str:
    return f"tenant {rating.tenant!r} may not rate a decision of tenant {decision.tenant!r}"


def _judge_early_ratings(st: events_pb2.JoinState) -> list[tuple[str, bytes]]:
    """In arrival order, the first rating the decision's tenant admits is kept; the rest are dead letters."""
    early = [events_pb2.Rating.FromString(r.SerializeToString()) for r in (st.rating, *st.waiting)]
    st.ClearField("rating")
    del st.waiting[:]
    dead = []
    for r in early:
        if _foreign(st.decision, r):
            dead.append((_foreign_reason(st.decision, r), r.SerializeToString()))
        elif st.HasField("rating"):
            dead.append((ALREADY_RATED, r.SerializeToString()))
        else:
            st.rating.CopyFrom(r)
    return dead


def _maybe_reward(st: events_pb2.JoinState, now: int, rules: JoinRules) -> Outcome:
    if st.rewarded or not st.HasField("decision"):
        return Outcome(st)
    d = st.decision
    failed = st.HasField("result") and not st.result.ok
    if failed:
        quality = rules.failure_quality
    elif st.HasField("rating") and (st.HasField("result") or d.mode == events_pb2.DECISION_MODE_DECIDE):
        quality = st.rating.quality
    else:
        return Outcome(st)
    if st.HasField("result"):
        cost = st.result.cost
    else:
        cost = st.rating.cost if st.rating.HasField("cost") else 0.0
    reward = events_pb2.RewardEvent(
        reward_id=d.decision_id, decision_id=d.decision_id, expert=d.chosen_expert, context=d.context,
        quality=quality, cost=cost, cost_weight=d.cost_weight, reward=quality - d.cost_weight * cost,
        propensity=d.propensity, policy_name=d.policy_name, policy_version=d.policy_version,
        expert_failed=failed, ts_ms=now)
    st.rewarded = True
    st.reward.CopyFrom(reward)
    del st.decision.context[:]      # the reward holds it now; keep the state small
    st.decision.ClearField("probabilities")
    st.decision.ClearField("scores")
    return Outcome(st, rewards=[reward])


def _sweep(st: events_pb2.JoinState, now: int, rules: JoinRules) -> Outcome:
    if st.HasField("reward") and now >= st.reward.ts_ms + rules.keep_reward_ms:
        st.ClearField("reward")        # redeliveries are over: only the ids and flags stay, to the TTL
    age = now - st.first_seen_ms
    if not st.HasField("decision"):
        if age < rules.grace_ms:
            return Outcome(st)
        held = [st.rating, *st.waiting] if st.HasField("rating") else []
        return Outcome(None, dead=[("unknown decision_id: no decision arrived within the grace period",
                                    r.SerializeToString()) for r in held])
    if age >= 2 * rules.ttl_ms:
        return Outcome(None)                    # the tombstone has done its work
    if age >= rules.ttl_ms and not st.expired:
        tomb = events_pb2.JoinState(first_seen_ms=st.first_seen_ms, expired=True,
                                    seen_event_ids=st.seen_event_ids, rewarded=st.rewarded)
        tomb.decision.decision_id = st.decision.decision_id
        return Outcome(tomb)
    return Outcome(st)


def due_at(st: events_pb2.JoinState, rules: JoinRules) -> int:
    """When the state next needs a sweep: the grace for a lone rating, dropping a sent reward,
    the TTL, then 2 x TTL."""
    if not st.HasField("decision"):
        return st.first_seen_ms + rules.grace_ms
    due = st.first_seen_ms + (2 * rules.ttl_ms if st.expired else rules.ttl_ms)
    return min(due, st.reward.ts_ms + rules.keep_reward_ms) if st.HasField("reward") else due

