"""A worker pool for one expert: consumer group `<prefix>workers.<expert>` on its request topic.

Requests are answered concurrently up to the expert's max_concurrency; offsets are
committed once every request of a polled batch has its result written (at-least-once).
Each result goes to `router.results` (for the feedback join) and to the replica's reply
topic named in the request. A redelivered request is not sent to the expert again: the
answer ledger (Redis, shared by all workers, see ledger.py) re-sends the stored result, or
leaves a request another worker is answering to it. Requests whose deadline has passed are
not sent to the expert (nobody waits), and malformed requests are dead-lettered.
A retryable backend error (connection, overload, 5xx) is tried again with backoff while
the deadline leaves room. A request marked `stream` gets its answer's pieces on the reply topic as the expert writes
them (partial results, at most one per stream_flush_ms), then the final result as always.
"""
from __future__ import annotations

import asyncio
import logging
import math
import socket
import time
from collections import OrderedDict

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from common.claims import PartStore
from common.codec import BadEvent, decode, require_uuid
from common.experts import ExpertConfig
from common.kafka import GroupMembership, dead_letter, make_consumer, now_ms, rewind, send_dead_letter
from common.lifecycle import cancel_task
from common.media import Part
from common.settings import WorkerSettings
from proto import events_pb2

from . import metrics
from .backends import Answer, BackendError, ExpertBackend, make_backend
from .ledger import AnswerLedger

log = logging.getLogger(__name__)


class ExpertPool:
    def __init__(self, settings: WorkerSettings, expert: ExpertConfig, producer: AIOKafkaProducer,
                 ledger: AnswerLedger, parts: PartStore, backend: ExpertBackend | None = None):
        self.s = settings
        self.parts = parts
        self.expert = expert
        self.producer = producer
        self.backend = backend or make_backend(expert)
        self.topic = settings.expert_topic(expert.name)
        group = settings.topic(f"workers.{expert.name}")
        self.consumer = make_consumer(settings.kafka_bootstrap, group_id=group, max_poll_records=settings.batch_max)
        self.membership = GroupMembership(group)
        self.limit = asyncio.Semaphore(expert.max_concurrency)
        self.ledger = ledger
        self._answered: OrderedDict[str, None] = OrderedDict()   # this process's recent ids: no Redis trip
        self._task: asyncio.Task | None = None
        self._stopping = False
        self.producer_id = f"worker:{socket.gethostname()}:{settings.worker_id}"

    async def start(self) -> None:
        await self.backend.start()
        self.consumer.subscribe([self.topic], listener=self.membership)
        await self.consumer.start()
        self._task = asyncio.create_task(self._run(), name=f"pool-{self.expert.name}")
        await self.membership.wait(self.s.join_timeout_s)

    async def stop(self, grace_s: float = 10.0) -> None:
        """Finish and commit the batch in hand (so nothing answered is redelivered), then stop."""
        self._stopping = True
        if self._task is not None:
            await asyncio.wait({self._task}, timeout=grace_s)
        await cancel_task(self._task)
        await self.consumer.stop()
        await self.backend.close()

    async def _run(self) -> None:
        while not self._stopping:
            batches = {}
            try:
                batches = await self.consumer.getmany(timeout_ms=500)
                records = [r for rs in batches.values() for r in rs]
                if not records:
                    continue
                outcomes = await asyncio.gather(*(self._handle(r) for r in records), return_exceptions=True)
                failed = next((o for o in outcomes if isinstance(o, BaseException)), None)
                if failed is not None:
                    raise failed
                await self.consumer.commit()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # A result could not be written (broker restart) or the commit failed: read the
                # batch again rather than commit past it later. The ledger makes the retry cheap:
                # what was answered is re-sent, not asked again.
                if isinstance(exc, KafkaError):
                    log.warning("%s pool: %s; retrying the batch", self.expert.name, exc)
                else:
                    log.exception("%s pool: unexpected error; retrying the batch", self.expert.name)
                rewind(self.consumer, batches)
                await asyncio.sleep(0.5)

    async def _handle(self, record) -> None:
        try:
            req = decode(record.value, events_pb2.ExpertRequest)
            require_uuid(req.decision_id)
            if req.expert != self.expert.name:
                raise BadEvent(f"request for expert {req.expert!r} on {self.expert.name!r}'s topic")
        except BadEvent as exc:
            metrics.MALFORMED.labels(self.expert.name).inc()
            await send_dead_letter(self.producer, self.s.dead_letter_topic, dead_letter(
                source_topic=record.topic, partition=record.partition, offset=record.offset,
                reason=str(exc), payload=record.value, component=self.producer_id))
            return
        if req.request_id in self._answered:
            metrics.DUPLICATES.labels(self.expert.name).inc()
            return
        now = now_ms()
        if req.deadline_ms and now > req.deadline_ms:
            metrics.EXPIRED.labels(self.expert.name).inc()   # the router has already timed out
            return
        claim_ms = req.deadline_ms - now + 5_000 if req.deadline_ms else int(self.s.claim_ttl_s * 1000)
        claim = await self.ledger.claim(req.request_id, claim_ms, req.deadline_ms)
        if claim.state == "busy":                            # another worker is answering it
            metrics.DUPLICATES.labels(self.expert.name).inc()
            log.info("%s: request %s is being answered by %s", self.expert.name, req.request_id, claim.holder)
            return
        if claim.state == "done":                            # answered before a crash or rebalance
            metrics.RESENT.labels(self.expert.name).inc()
            payload = claim.result
        else:
            async with self.limit:
                result = await self._call(req)
            payload = result.SerializeToString()
        key = req.decision_id.encode()
        sends = [self.producer.send_and_wait(self.s.results_topic, payload, key=key)]
        if req.reply_topic:
            sends.append(self.producer.send_and_wait(req.reply_topic, payload, key=key))
        if claim.state == "claimed":     # the reply does not wait for the ledger; the commit does
            sends.append(self.ledger.record(req.request_id, payload))
        await asyncio.gather(*sends)
        self._answered[req.request_id] = None
        if len(self._answered) > 100_000:
            self._answered.popitem(last=False)

    async def _parts(self, req: events_pb2.ExpertRequest) -> list[Part]:
        """The request's parts from the claim check; one that is gone fails the call (the
        router falls back as for any failed expert)."""
        parts = []
        for ref in req.parts:
            part = await self.parts.get(ref)
            if part is None:
                raise BackendError(f"part {ref.name or ref.sha256[:12]} ({ref.media_type}) expired or missing "
                                   "from the claim check")
            parts.append(part)
        return parts

    async def _call(self, req: events_pb2.ExpertRequest) -> events_pb2.ExpertResult:
        result = events_pb2.ExpertResult(
            request_id=req.request_id, decision_id=req.decision_id, expert=self.expert.name,
            attempt=req.attempt, fallback=req.fallback, producer=self.producer_id)
        started = time.monotonic()
        try:
            ans = await self._answer(req, await self._parts(req), result)
            result.ok, result.answer, result.cost = True, ans.text, ans.cost
            result.input_tokens, result.output_tokens = ans.input_tokens, ans.output_tokens
        except BackendError as exc:
            result.ok, result.error = False, str(exc)
        except Exception as exc:   # a backend bug fails this request, not the pool
            log.exception("%s backend crashed", self.expert.name)
            result.ok, result.error = False, f"backend error: {type(exc).__name__}"
        result.latency_s = time.monotonic() - started
        result.ts_ms = now_ms()
        metrics.CALLS.labels(self.expert.name, "ok" if result.ok else "error").inc()
        metrics.CALL_SECONDS.labels(self.expert.name).observe(result.latency_s)
        metrics.COST.labels(self.expert.name).inc(result.cost)
        return result

    async def _answer(self, req: events_pb2.ExpertRequest, parts: list[Part],
                      head: events_pb2.ExpertResult) -> Answer:
        """The backend's answer; a retryable error is tried again after a backoff (doubling)
        while the request's deadline leaves room for it, at most backend_retries times."""
        backoff = self.s.retry_backoff_s
        for retry in range(self.s.backend_retries + 1):
            try:
                if req.stream and req.reply_topic:
                    return await self._stream(req, parts, head)
                return await self.backend.answer(req, parts)
            except BackendError as exc:
                left = (req.deadline_ms - now_ms()) / 1000.0 if req.deadline_ms else math.inf
                if not exc.retryable or retry == self.s.backend_retries or left < 2 * backoff:
                    raise
                log.info("%s: %s failed (%s); trying again in %.2fs", self.expert.name, req.request_id, exc, backoff)
                metrics.RETRIES.labels(self.expert.name).inc()
                await asyncio.sleep(backoff)
                backoff *= 2
        raise AssertionError("unreachable")

    async def _stream(self, req: events_pb2.ExpertRequest, parts: list[Part],
                      head: events_pb2.ExpertResult) -> Answer:
        """Forward the backend's pieces to the waiting router, coalesced to one message per
        stream_flush_ms; the first goes at once (time to first token is the expert's)."""
        key, flush_s = req.decision_id.encode(), self.s.stream_flush_ms / 1000.0
        pending, seq, last_sent, live = [], 0, -math.inf, True
        answer = None

        async def send() -> None:
            nonlocal seq, last_sent, live
            seq += 1
            piece = events_pb2.ExpertResult()
            piece.CopyFrom(head)
            piece.partial, piece.seq, piece.answer, piece.ts_ms = True, seq, "".join(pending), now_ms()
            pending.clear()
            last_sent = time.monotonic()
            try:   # queued, not awaited: pieces keep their order on the partition
                await self.producer.send(req.reply_topic, piece.SerializeToString(), key=key)
            except KafkaError as exc:   # the final result still carries the whole answer
                log.warning("%s: streaming %s stopped: %s", self.expert.name, req.request_id, exc)
                live = False

        try:
            async for piece in self.backend.stream(req, parts):
                if isinstance(piece, Answer):
                    answer = piece
                elif piece:
                    pending.append(piece)
                    if live and time.monotonic() - last_sent >= flush_s:
                        await send()
        except BackendError as exc:
            if seq:    # the router has part of this answer: another try would repeat it
                raise BackendError(str(exc), retryable=False) from exc
            raise
        if pending and live:
            await send()
        if answer is None:
            raise BackendError("the expert's stream ended without an answer")
        metrics.STREAMED.labels(self.expert.name).inc(seq)
        return answer
