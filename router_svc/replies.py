"""The replica's private reply topic: expert results come back here to the waiting request.

Each router replica owns `router.replies.<router_id>` (one partition, no consumer group)
and reads it from the end. A result is delivered to the request waiting for its
(decision_id, attempt); duplicates and late results find nobody waiting and are dropped,
so every request gets exactly one answer.
"""
from __future__ import annotations

import asyncio
import logging

from aiokafka import TopicPartition

from common.codec import BadEvent, decode
from common.kafka import make_consumer
from common.lifecycle import cancel_task
from proto import events_pb2

from . import metrics

log = logging.getLogger(__name__)


class ReplyListener:
    def __init__(self, bootstrap: str, topic: str):
        self.topic = topic
        self._consumer = make_consumer(bootstrap, group_id=None, auto_offset_reset="latest")
        self._waiting: dict[tuple[str, int], asyncio.Future] = {}
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        await self._consumer.start()
        tp = TopicPartition(self.topic, 0)
        self._consumer.assign([tp])
        await self._consumer.seek_to_end(tp)
        await self._consumer.position(tp)   # resolve now, before any request is dispatched
        self._task = asyncio.create_task(self._run(), name="reply-listener")

    async def stop(self) -> None:
        await cancel_task(self._task)
        await self._consumer.stop()

    def expect(self, decision_id: str, attempt: int) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        self._waiting[(decision_id, attempt)] = fut
        return fut

    def forget(self, decision_id: str, attempt: int) -> None:
        self._waiting.pop((decision_id, attempt), None)

    async def _run(self) -> None:
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=500, max_records=500)
            except asyncio.CancelledError:
                raise
            except Exception as exc:   # broker restart: aiokafka reconnects on the next call
                log.warning("reply listener: %s", exc)
                await asyncio.sleep(0.5)
                continue
            for records in batches.values():
                for rec in records:
                    self._deliver(rec.value)

    def _deliver(self, payload: bytes) -> None:
        try:
            result = decode(payload, events_pb2.ExpertResult)
        except BadEvent as exc:
            metrics.BAD_REPLIES.inc()
            log.warning("undecodable reply dropped: %s", exc)
            return
        fut = self._waiting.pop((result.decision_id, result.attempt), None)
        if fut is None or fut.done():
            metrics.LATE_REPLIES.inc()
            return
        fut.set_result(result)
