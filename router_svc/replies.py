"""The replica's private reply topic: expert results come back here to the waiting request.

Each router replica owns `router.replies.<router_id>` (one partition, no consumer group)
and reads it from the end. A result is delivered to the request waiting for its
(decision_id, attempt); duplicates and late results find nobody waiting and are dropped,
so every request gets exactly one answer. A streamed answer's pieces (partial results)
go to the request's `on_piece` callback in order, once each, and stop at a gap (the
final result carries the whole answer).
"""
from __future__ import annotations

import asyncio
import logging

from aiokafka import TopicPartition

from typing import Callable

from common.codec import BadEvent, decode
from common.kafka import make_consumer, poll_forever
from common.lifecycle import cancel_task
from proto import events_pb2

from . import metrics

log = logging.getLogger(__name__)


class ReplyListener:
    def __init__(self, bootstrap: str, topic: str):
        self.topic = topic
        self._consumer = make_consumer(bootstrap, group_id=None, auto_offset_reset="latest")
        self._waiting: dict[tuple[str, int], asyncio.Future] = {}
        self._pieces: dict[tuple[str, int], tuple[Callable, list[int]]] = {}
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

    def expect(self, decision_id: str, attempt: int,
               on_piece: Callable[[events_pb2.ExpertResult], None] | None = None) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        self._waiting[(decision_id, attempt)] = fut
        if on_piece is not None:
            self._pieces[(decision_id, attempt)] = (on_piece, [0])
        return fut

    def forget(self, decision_id: str, attempt: int) -> None:
        self._waiting.pop((decision_id, attempt), None)
        self._pieces.pop((decision_id, attempt), None)

    async def _run(self) -> None:
        await poll_forever(self._consumer, self._batch, "reply listener")

    def _batch(self, batches: dict) -> None:
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
        key = (result.decision_id, result.attempt)
        if result.partial:
            listener = self._pieces.get(key)
            if listener is not None:
                last = listener[1]
                if result.seq == last[0] + 1:
                    last[0] = result.seq
                    listener[0](result)
                elif result.seq > last[0] + 1:   # a piece went missing: the final answer fills in the rest
                    last[0] = 2**31
            return
        self._pieces.pop(key, None)
        fut = self._waiting.pop(key, None)
        if fut is None or fut.done():
            metrics.LATE_REPLIES.inc()
            return
        fut.set_result(result)
