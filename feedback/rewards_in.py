"""router.rewards -> the Learner, on plain aiokafka with manual commits.

Why not a faust agent: the learner's memory is Redis, and a batch counts as done only
once its snapshot is written there. So the loop is: poll a batch, dead-letter what is
malformed, apply the rest (snapshot + applied ids + offsets in one Redis transaction),
then commit the offsets to Kafka. A crash anywhere before the Redis write redelivers
the batch; after it, the redelivered rewards are recognised as applied. On assignment
each partition resumes from the offset stored in Redis when that is ahead of Kafka's
committed one (a crash between the Redis write and the commit).
"""
from __future__ import annotations

import asyncio
import logging

import numpy as np
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from common.codec import BadEvent, decode, require_finite
from common.kafka import (GroupMembership, commit_assigned, dead_letter, group_timing, make_consumer, make_producer,
                          rewind, send_dead_letter)
from common.lifecycle import cancel_task, stop_within
from common.settings import FeedbackSettings
from proto import events_pb2

from .learner import Learner
from .metrics import DEAD, REDIS_RETRIES

log = logging.getLogger(__name__)


def check_reward(payload: bytes | None, dim: int) -> events_pb2.RewardEvent:
    """A reward the learner can apply, or BadEvent with the reason."""
    r = decode(payload, events_pb2.RewardEvent)
    if not r.reward_id or not r.expert:
        raise BadEvent("reward without reward_id or expert")
    if len(r.context) != dim:
        raise BadEvent(f"reward context has {len(r.context)} features, the policy expects {dim}")
    if not np.all(np.isfinite(r.context)):
        raise BadEvent("reward context has non-finite values")
    require_finite(r.quality, "quality")
    require_finite(r.cost, "cost")
    return r


class _ResumeFromRedis(GroupMembership):
    """Group membership (readiness) that first seeks each assigned partition to Redis' offset."""

    def __init__(self, owner: "RewardConsumer", name: str):
        super().__init__(name)
        self.owner = owner

    async def on_partitions_assigned(self, assigned) -> None:
        await self.owner.resume(assigned)
        await super().on_partitions_assigned(assigned)


class RewardConsumer:
    def __init__(self, s: FeedbackSettings, learner: Learner, dim: int, group_suffix: str = "",
                 dead_letters: bool = True):
        self.s = s
        self.learner = learner
        self.dim = dim
        self.dead_letters = dead_letters
        self.membership = _ResumeFromRedis(self, f"{s.app_id}-learner{group_suffix}")
        self._reassigned = False     # set by the rebalance listener, acted on between batches
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        s = self.s   # aiokafka clients are made inside the running loop
        self.consumer = make_consumer(
            s.kafka_bootstrap, group_id=self.membership.name, max_poll_records=s.learner_batch,
            **group_timing(s.session_timeout_s))
        self.producer = make_producer(s.kafka_bootstrap)
        await self.producer.start()
        self.consumer.subscribe([s.rewards_topic], listener=self.membership)
        await self.consumer.start()
        self._task = asyncio.create_task(self._run(), name="learner")

    async def stop(self) -> None:
        await cancel_task(self._task, 15)
        await stop_within(self.consumer.stop(), 15, "learner consumer")
        await stop_within(self.producer.stop(), 15, "learner producer")

    async def resume(self, assigned) -> None:
        """Start each newly assigned partition where Redis says the learner got to."""
        # Arms may have moved between shards: the learner reloads what it touches. Not here:
        # a batch may be half applied while the listener runs; the loop forgets between batches.
        self._reassigned = True
        stored = await self._retry_redis(self.learner.store.offsets)
        for tp in assigned:
            offset = stored.get(f"{tp.topic}:{tp.partition}")
            if offset is not None:
                self.consumer.seek(tp, offset)
        log.info("learner resumes partitions from Redis offsets %s",
                 {tp.partition: stored.get(f"{tp.topic}:{tp.partition}") for tp in assigned})

    async def _run(self) -> None:
        flush_ms = int(self.s.learner_flush_s * 1000)
        while True:
            batches = {}
            try:
                batches = await self.consumer.getmany(timeout_ms=flush_ms, max_records=self.s.learner_batch)
                if not batches:
                    continue
                good = []
                for records in batches.values():
                    for rec in records:
                        try:
                            good.append(check_reward(rec.value, self.dim))
                        except BadEvent as exc:
                            if not self.dead_letters:
                                continue
                            DEAD.labels(rec.topic).inc()
                            await send_dead_letter(self.producer, self.s.dead_letter_topic, dead_letter(
                                source_topic=rec.topic, partition=rec.partition, offset=rec.offset,
                                reason=str(exc), payload=rec.value, component="feedback-learner"))
                offsets = {tp: rs[-1].offset + 1 for tp, rs in batches.items()}
                if self._reassigned:
                    self._reassigned = False
                    self.learner.forget()
                await self._retry_redis(lambda: self.learner.apply(
                    good, {f"{tp.topic}:{tp.partition}": o for tp, o in offsets.items()}))
                await commit_assigned(self.consumer, offsets, "learner")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # A dead letter could not be written (broker down) or something unexpected:
                # read the batch again rather than move past it; Redis says what was applied.
                if isinstance(exc, KafkaError):
                    log.warning("learner: %s; retrying the batch", exc)
                else:
                    log.exception("learner: unexpected error; retrying the batch")
                rewind(self.consumer, batches)
                await asyncio.sleep(0.5)

    @staticmethod
    async def _retry_redis(step):
        """Redis down: hold the batch and retry (back-pressure), rather than drop or crash."""
        delay = 0.2
        while True:
            try:
                return await step()
            except (RedisError, OSError) as exc:
                REDIS_RETRIES.inc()
                log.warning("learner cannot reach Redis (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
