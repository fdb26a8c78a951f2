"""Which expert requests have been answered, shared by every worker process through Redis.

Kafka redelivers a request whenever a worker dies between writing the result and
committing the offset, and after rebalances; without a shared record, a restarted or
different worker would call the (possibly paid) expert again. Before calling, a worker
claims the request id; after answering, it stores the result under the id. A redelivered
request then gets the stored result re-sent (downstream consumers drop duplicates), and a
request claimed by a live worker is left to it.

A claim expires with the request's deadline (nobody waits after that), a stored result
after `ttl_s`. When Redis cannot be reached the ledger answers "call it" (availability over
strict deduplication) and counts that, so an outage costs possible double calls, not lost
requests. It costs no time either: a ledger call waits at most `share` of the time left
before the request's deadline (and `timeout_s`), and after a failure the ledger is skipped
for `pause_s` instead of every request paying the client's reconnect attempts (measured:
a 5 s Redis restart under 16 clients with 3 s deadlines otherwise timed requests out, which
then opened the experts' circuit breakers).
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from common.kafka import now_ms

from . import metrics

log = logging.getLogger(__name__)

# KEYS[1] result key, KEYS[2] claim key; ARGV[1] claimant, ARGV[2] claim ttl (ms).
# Returns {"done", result} | {"claimed"} | {"busy", claimant}.
_CLAIM = """
local done = redis.call('GET', KEYS[1])
if done then return {'done', done} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {'claimed'} end
return {'busy', redis.call('GET', KEYS[2]) or ''}
"""


@dataclass(frozen=True)
class Claim:
    state: str                 # "claimed" (call the expert), "done" (re-send `result`), "busy"
    result: bytes = b""
    holder: str = ""


class AnswerLedger:
    def __init__(self, redis: aioredis.Redis, prefix: str, worker_id: str, ttl_s: float, timeout_s: float = 2.0,
                 share: float = 0.2, pause_s: float = 1.0):
        self.r = redis
        self.prefix = f"{prefix}answers:"
        self.worker_id = worker_id
        self.ttl_ms = int(ttl_s * 1000)
        self.timeout_s, self.share, self.pause_s = timeout_s, share, pause_s
        self._down_until = 0.0
        self._claim = redis.register_script(_CLAIM)

    def _wait(self, deadline_ms: int) -> float | None:
        """How long a ledger call may take for this request; None: skip it (Redis just failed)."""
        if time.monotonic() < self._down_until:
            return None
        left = (deadline_ms - now_ms()) / 1000.0 if deadline_ms else self.timeout_s
        return min(self.timeout_s, max(left * self.share, 0.005))

    def _failed(self, exc: Exception, what: str) -> None:
        metrics.LEDGER_ERRORS.inc()
        if time.monotonic() >= self._down_until:
            log.warning("answer ledger unreachable (%s): %s; skipping it for %.1fs", exc, what, self.pause_s)
        self._down_until = time.monotonic() + self.pause_s

    def _keys(self, request_id: str) -> list[str]:
        return [f"{self.prefix}{request_id}:result", f"{self.prefix}{request_id}:claim"]

    async def claim(self, request_id: str, claim_ms: int, deadline_ms: int = 0) -> Claim:
        wait = self._wait(deadline_ms)
        if wait is None:
            metrics.LEDGER_ERRORS.inc()
            return Claim("claimed")
        try:
            out = await asyncio.wait_for(
                self._claim(keys=self._keys(request_id), args=[self.worker_id, max(claim_ms, 1)]), wait)
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            self._failed(exc, f"calling the expert for {request_id} anyway")
            return Claim("claimed")
        state = out[0].decode()                  # the client returns bytes (no decode_responses)
        if state == "done":
            return Claim("done", result=out[1])
        if state == "busy":
            return Claim("busy", holder=out[1].decode())
        return Claim("claimed")

    async def record(self, request_id: str, result: bytes) -> None:
        """Store the answer (and drop the claim); best effort, like the claim. Nobody waits
        on it (the reply goes out beside it), so it may take the full timeout_s."""
        if time.monotonic() < self._down_until:
            metrics.LEDGER_ERRORS.inc()
            return
        result_key, claim_key = self._keys(request_id)
        try:
            async with self.r.pipeline(transaction=True) as pipe:
                pipe.set(result_key, result, px=self.ttl_ms).delete(claim_key)
                await asyncio.wait_for(pipe.execute(), self.timeout_s)
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            self._failed(exc, f"{request_id} not recorded")
