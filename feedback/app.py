"""The feedback service as one faust-streaming app: the join agent and the learner agent.

join: one stream over decisions, results, ratings and the app's own sweep topic, keyed by
decision_id (co-partitioned), with the per-decision JoinState in a changelog-backed
table. A timer finds states that are due for expiry and sends a sweep event for each, so
that every table change happens inside the stream, as faust requires.
learn: batches of router.rewards (keyed by expert) applied by the Learner.
Undecodable or invalid events are dead-lettered with a reason and counted; the agents
never die on bad input.
"""
from __future__ import annotations

import asyncio
import heapq
import logging

import faust
import numpy as np
from common.redis_client import connect
from redis.exceptions import RedisError

from common.codec import BadEvent, decode, require_finite
from common.kafka import dead_letter, now_ms
from common.settings import FeedbackSettings
from common.snapshots import SnapshotStore
from proto import events_pb2
from router_svc.context import context_dim
from router_svc.policies import make_policy

from . import join
from .metrics import DEAD, EVENTS, REDIS_RETRIES, REWARDS
from .learner import Learner

log = logging.getLogger(__name__)


def build_app(s: FeedbackSettings) -> faust.App:
    app = faust.App(
        s.app_id, broker=f"kafka://{s.kafka_bootstrap}", store="memory://", value_serializer="raw",
        key_serializer="raw", topic_partitions=s.topic_partitions, topic_replication_factor=1,
        web_enabled=bool(s.web_port), web_port=s.web_port or 6066, producer_acks=-1,
        consumer_auto_offset_reset="earliest", broker_commit_every=100, broker_commit_interval=1.0,
        stream_wait_empty=False, table_cleanup_interval=60.0)
    kinds = {s.decisions_topic: (join.DECISION, events_pb2.DecisionEvent),
             s.results_topic: (join.RESULT, events_pb2.ExpertResult),
             s.ratings_topic: (join.RATING, events_pb2.Rating),
             s.topic("feedback.sweeps"): (join.SWEEP, events_pb2.JoinState)}
    inputs = app.topic(*kinds, value_type=bytes, key_type=bytes, partitions=s.topic_partitions)
    sweeps = app.topic(s.topic("feedback.sweeps"), value_type=bytes, key_type=bytes, partitions=s.topic_partitions)
    rewards = app.topic(s.rewards_topic, value_type=bytes, key_type=bytes, partitions=s.topic_partitions)
    dead = app.topic(s.dead_letter_topic, value_type=bytes, key_type=bytes, partitions=s.topic_partitions)
    table = app.Table("joins", default=None, partitions=s.topic_partitions, key_type=bytes, value_type=bytes)
    rules = join.JoinRules(int(s.decision_ttl_s * 1000), int(s.unknown_grace_s * 1000), s.failure_quality)

    async def to_dead_letter(message, reason: str, payload: bytes | None, decision_id: str = "") -> None:
        DEAD.labels(message.topic).inc()
        log.warning("dead letter (%s): %s", message.topic, reason)
        letter = dead_letter(source_topic=message.topic, partition=message.partition, offset=message.offset,
                             reason=reason, payload=payload, component="feedback", decision_id=decision_id)
        await dead.send(key=decision_id.encode() or None, value=letter.SerializeToString())

    @app.agent(inputs)
    async def join_events(stream):
        async for event in stream.events():
            msg = event.message
            kind, cls = kinds[msg.topic]
            try:
                ev = decode(event.value, cls)
                did = ev.decision.decision_id if kind == join.SWEEP else join.validate(kind, ev)
            except BadEvent as exc:
                EVENTS.labels(kind, "malformed").inc()
                await to_dead_letter(msg, str(exc), event.value)
                continue
            key = did.encode()
            raw = table.get(key)
            state = decode(raw, events_pb2.JoinState) if raw else None
            out = join.apply(state, kind, ev, now_ms(), rules)
            EVENTS.labels(kind, "duplicate" if out.duplicate else "ok").inc()
            for reason, payload in out.dead:
                await to_dead_letter(msg, reason, payload, did)
            for reward in out.rewards:
                REWARDS.inc()
                await rewards.send(key=reward.expert.encode(), value=reward.SerializeToString())
            if out.state is None:
                table.pop(key, None)
            elif not out.duplicate:
                table[key] = out.state.SerializeToString()
                heapq.heappush(due, (join.due_at(out.state, rules), key))

    # When each state is next due for a sweep: a heap fed by the agent, rebuilt from the
    # table after every rebalance (recovered or newly assigned partitions), so a sweep
    # touches only what is due instead of parsing the whole table.
    due: list[tuple[int, bytes]] = []
    rescan = [True]

    @app.on_rebalance_complete.connect
    async def _schedule_rescan(sender, **kwargs) -> None:
        rescan[0] = True

    @app.timer(s.sweep_interval_s)
    async def sweep_due_states():
        now = now_ms()
        if rescan[0]:
            rescan[0] = False
            due.clear()
            due.extend((join.due_at(events_pb2.JoinState.FromString(raw), rules), key) for key, raw in table.items())
            heapq.heapify(due)
        while due and due[0][0] <= now:
            _, key = heapq.heappop(due)
            raw = table.get(key)   # a stale entry (state changed or gone) is re-checked here
            if raw is None or not join.needs_sweep(events_pb2.JoinState.FromString(raw), now, rules):
                continue
            tick = events_pb2.JoinState()
            tick.decision.decision_id = key.decode()
            await sweeps.send(key=key, value=tick.SerializeToString())

    dim = context_dim(s.embedding_dim)
    redis = connect(s.redis_url)
    policy = make_policy(s.policy, dim, s.policy_params)
    learner = Learner(policy, SnapshotStore(redis, s.redis_prefix, s.policy), s.seen_ttl_s)
    app.learner = learner

    @app.agent(rewards)
    async def learn(stream):
        async for batch in stream.take_events(s.learner_batch, within=s.learner_flush_s):
            good = []
            for event in batch:
                try:
                    r = decode(event.value, events_pb2.RewardEvent)
                    if len(r.context) != dim:
                        raise BadEvent(f"reward context has {len(r.context)} features, the policy expects {dim}")
                    if not np.all(np.isfinite(r.context)):
                        raise BadEvent("reward context has non-finite values")
                    require_finite(r.quality, "quality")
                    require_finite(r.cost, "cost")
                    good.append(r)
                except BadEvent as exc:
                    await to_dead_letter(event.message, str(exc), event.value)
            await apply_until_done(learner, good)

    async def apply_until_done(learner: Learner, batch: list) -> None:
        """Redis down: hold the batch and retry (back-pressure), rather than drop or crash."""
        delay = 0.2
        while True:
            try:
                await learner.apply(batch)
                return
            except RedisError as exc:
                REDIS_RETRIES.inc()
                log.warning("learner cannot reach Redis (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    return app
