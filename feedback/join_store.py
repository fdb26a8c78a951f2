"""The join's per-decision state in Redis, and when each state is next due for a sweep.

Keys under `<prefix>join:`
  s:<decision_id>      the JoinState (protobuf), expiring a little after the decision's TTL
  due:<partition>      sorted set: decision_id scored by when its state needs a sweep
A batch's states are written in one MULTI/EXEC, so a crash leaves all or none of them.
"""
from __future__ import annotations

import redis.asyncio as aioredis

from proto import events_pb2

from . import join


class JoinStore:
    def __init__(self, redis: aioredis.Redis, prefix: str, sweep_limit: int = 1000):
        self.redis = redis
        self.key = f"{prefix}join:"
        self.sweep_limit = sweep_limit

    async def load(self, ids: set[str]) -> dict[str, events_pb2.JoinState]:
        ids = sorted(ids)
        if not ids:
            return {}
        blobs = await self.redis.mget([self.key + "s:" + i for i in ids])
        return {i: events_pb2.JoinState.FromString(b) for i, b in zip(ids, blobs) if b is not None}

    async def save(self, changes: dict[str, tuple[events_pb2.JoinState | None, int]], rules: join.JoinRules) -> None:
        """decision_id -> (new state or None to delete, partition it belongs to)."""
        if not changes:
            return
        keep_ms = 2 * rules.ttl_ms + rules.grace_ms + 60_000    # a backstop: sweeps delete first
        async with self.redis.pipeline(transaction=True) as pipe:
            for did, (state, partition) in changes.items():
                due = f"{self.key}due:{partition}"
                if state is None:
                    pipe.delete(self.key + "s:" + did).zrem(due, did)
                else:
                    pipe.set(self.key + "s:" + did, state.SerializeToString(), px=keep_ms)
                    pipe.zadd(due, {did: join.due_at(state, rules)})
            await pipe.execute()

    async def due(self, partitions: list[int], now: int) -> dict[str, int]:
        """decision_id -> partition, for states of these partitions due at `now`."""
        out: dict[str, int] = {}
        for p in partitions:
            ids = await self.redis.zrangebyscore(f"{self.key}due:{p}", "-inf", now, start=0, num=self.sweep_limit)
            out.update({i.decode(): p for i in ids})
        return out
