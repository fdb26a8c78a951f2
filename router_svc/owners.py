"""Which tenant made each decision, so that a rating from another tenant is refused at once.

With auth on, the router notes `owner:<decision_id> = tenant` in Redis (in the background,
best effort) when it logs a decision, and Feedback looks it up. A miss (expired, Redis
down, a decision from before auth) lets the rating through: the feedback join compares
the rating's tenant with the decision's and dead-letters a stranger's rating anyway.
"""
from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


class Owners:
    def __init__(self, redis: aioredis.Redis, prefix: str, ttl_s: float, timeout_s: float = 0.5):
        self.r, self.prefix = redis, f"{prefix}owner:"
        self.ttl_ms, self.timeout_s = max(1, int(ttl_s * 1000)), timeout_s
        self._pending: set[asyncio.Task] = set()

    def remember(self, decision_id: str, tenant: str) -> None:
        task = asyncio.create_task(self._set(decision_id, tenant))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _set(self, decision_id: str, tenant: str) -> None:
        try:
            await asyncio.wait_for(self.r.set(self.prefix + decision_id, tenant, px=self.ttl_ms), self.timeout_s)
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            log.debug("owner of %s not noted: %s", decision_id, exc)

    async def owner(self, decision_id: str) -> str | None:
        try:
            value = await asyncio.wait_for(self.r.get(self.prefix + decision_id), self.timeout_s)
        except (RedisError, OSError, asyncio.TimeoutError):
            return None
        return value.decode() if value is not None else None
