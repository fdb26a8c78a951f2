"""decisions + results + ratings -> rewards: the join on plain aiokafka, its state in Redis.

One consumer group reads the three topics with the range assignor, so partition p of
every topic (all keyed by decision_id) belongs to one member: one writer per decision.
A polled batch is applied in order to the per-decision JoinStates (join.py, pure), then
  1. rewards and dead letters are written and acknowledged by Kafka,
  2. the new states are written to Redis (with the time each is next due for a sweep),
  3. the offsets are committed.
A crash before 2 redelivers the batch against the old states: the same rewards are
sent again (same reward_id; the learner applies each once). A crash between 2 and 3
redelivers events the states have seen: a repeat of a rewarded decision sends its
reward again, for the same reason. Nothing is acknowledged before it is durable, and a
restart replays nothing but the uncommitted tail: ready as soon as the group is joined.
Why not faust: its table changelog is written before the messages "attached" to an
event, and a SIGKILL between the two lost rewards and (seen here) state.
"""
from __future__ import annotations

import asyncio
import logging

from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from common.codec import BadEvent, decode
from common.kafka import (GroupMembership, commit_assigned, dead_letter, group_timing, make_consumer, make_producer,
                          now_ms, rewind)
from common.lifecycle import cancel_task, stop_within
from common.settings import FeedbackSettings
from proto import events_pb2

from . import join
from .join_store import JoinStore
from .metrics import DEAD, EVENTS, REWARDS

log = logging.getLogger(__name__)


class JoinLoop:
    def __init__(self, s: FeedbackSettings, store: JoinStore):
        self.s = s
        self.store = store
        self.rules = join.JoinRules(int(s.decision_ttl_s * 1000), int(s.unknown_grace_s * 1000), s.failure_quality,
                                    int(s.reward_keep_s * 1000))
        self.kinds = {s.decisions_topic: (join.DECISION, events_pb2.DecisionEvent),
                      s.results_topic: (join.RESULT, events_pb2.ExpertResult),
                      s.ratings_topic: (join.RATING, events_pb2.Rating)}
        self.membership = GroupMembership(f"{s.app_id}-join")
        self._lock = asyncio.Lock()          # batches and sweeps change states one at a time
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        s = self.s
        self.producer = make_producer(s.kafka_bootstrap)
        await self.producer.start()
        self.consumer = make_consumer(
            s.kafka_bootstrap, group_id=f"{s.app_id}-join", max_poll_records=s.join_batch,
            partition_assignment_strategy=(RangePartitionAssignor,), **group_timing(s.session_timeout_s))
        self.consumer.subscribe(list(self.kinds), listener=self.membership)
        await self.consumer.start()
        self._tasks = [asyncio.create_task(self._run(), name="join"),
                       asyncio.create_task(self._sweep_forever(), name="join-sweeps")]

    async def stop(self) -> None:
        for task in self._tasks:
            await cancel_task(task, 15)
        await stop_within(self.consumer.stop(), 15, "join consumer")
        await stop_within(self.producer.stop(), 15, "join producer")

    # -- the stream ------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            batches = {}
            try:
                batches = await self.consumer.getmany(timeout_ms=500, max_records=self.s.join_batch)
                if not batches:
                    continue
                async with self._lock:
                    await self._apply_batch([r for rs in batches.values() for r in rs])
                await commit_assigned(self.consumer, {tp: rs[-1].offset + 1 for tp, rs in batches.items()}, "join")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Kafka or Redis unreachable, or a bug: read the batch again, never move past it.
                if isinstance(exc, (KafkaError, RedisError, OSError)):
                    log.warning("join: %s; retrying the batch", exc)
                else:
                    log.exception("join: unexpected error; retrying the batch")
                rewind(self.consumer, batches)
                await asyncio.sleep(0.5)

    async def _apply_batch(self, records) -> None:
        events, letters = [], []
        for rec in records:
            kind, cls = self.kinds[rec.topic]
            try:
                ev = decode(rec.value, cls, json_ok=kind == join.RATING)   # product teams produce JSON
                events.append((rec, kind, ev, join.validate(kind, ev)))
            except BadEvent as exc:
                EVENTS.labels(kind, "malformed").inc()
                letters.append(self._letter(rec.topic, str(exc), rec.value, rec.partition, rec.offset))
        states = await self.store.load({did for *_, did in events})
        rewards, changed = [], {}
        for rec, kind, ev, did in events:
            out = join.apply(states.get(did), kind, ev, now_ms(), self.rules)
            EVENTS.labels(kind, "duplicate" if out.duplicate else "ok").inc()
            letters += [self._letter(rec.topic, reason, payload, rec.partition, rec.offset, did)
                        for reason, payload in out.dead]
            rewards += out.rewards
            if out.state is not None or did in states:
                states[did] = out.state
                changed[did] = rec.partition
        await self._send(rewards, letters)
        await self.store.save({did: (states[did], p) for did, p in changed.items()}, self.rules)

    async def _send(self, rewards: list[events_pb2.RewardEvent], letters: list[events_pb2.DeadLetter]) -> None:
        """Write and wait for Kafka's acknowledgement of every reward and dead letter."""
        sends = [self.producer.send(self.s.rewards_topic, r.SerializeToString(), key=r.expert.encode())
                 for r in rewards]
        for letter in letters:
            DEAD.labels(letter.source_topic).inc()
            log.warning("dead letter (%s): %s", letter.source_topic, letter.reason)
            sends.append(self.producer.send(self.s.dead_letter_topic, letter.SerializeToString(),
                                            key=letter.decision_id.encode() or None))
        await asyncio.gather(*[await s for s in sends])
        REWARDS.inc(len(rewards))

    @staticmethod
    def _letter(topic, reason, payload, partition=-1, offset=-1, did="") -> events_pb2.DeadLetter:
        return dead_letter(source_topic=topic, partition=partition, offset=offset, reason=reason,
                           payload=payload, component="feedback-join", decision_id=did)

    # -- expiry ------------------------------------------------------------------------
    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.s.sweep_interval_s)
            try:
                async with self._lock:
                    await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception as exc:   # Redis or Kafka down: the due states wait for the next round
                log.warning("join sweep: %s", exc)

    async def sweep(self) -> None:
        """Apply the sweep rule (grace for unknown ids, TTL) to due states of our partitions."""
        partitions = sorted({tp.partition for tp in self.consumer.assignment()})
        due = await self.store.due(partitions, now_ms())
        if not due:
            return
        states = await self.store.load(set(due))
        letters, changed = [], {}
        for did, partition in due.items():
            out = join.apply(states.get(did), join.SWEEP, None, now_ms(), self.rules)
            letters += [self._letter(self.s.ratings_topic, reason, payload, did=did) for reason, payload in out.dead]
            states[did] = out.state
            changed[did] = partition
        await self._send([], letters)
        await self.store.save({did: (states[did], p) for did, p in changed.items()}, self.rules)
