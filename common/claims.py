"""Claim check for content parts: the bytes go to Redis once, events carry a PartRef.

Kafka events stay small (an image can be megabytes; a decision is logged, dispatched and
maybe retried): the router stores each part under its SHA-256 with a TTL and the expert
request names it. The same bytes sent twice are stored once (the key is the content),
and a second store only renews the TTL. A worker reads the part back and checks its
hash; a part gone (expired, evicted, never stored) is `None`, which the worker answers
as an expert failure, so the router falls back as for any failed call.
"""
from __future__ import annotations

import hashlib

import redis.asyncio as aioredis

from proto import events_pb2

from .media import Part


class PartStore:
    def __init__(self, redis: aioredis.Redis, prefix: str, ttl_s: float = 3600.0):
        self.r = redis
        self.prefix = f"{prefix}part:"
        self.ttl_ms = max(1, int(ttl_s * 1000))

    async def put(self, part: Part) -> events_pb2.PartRef:
        ref = part_ref(part)
        key = self.prefix + ref.sha256
        async with self.r.pipeline(transaction=False) as pipe:
            pipe.set(key, part.data, px=self.ttl_ms, nx=True)
            pipe.pexpire(key, self.ttl_ms)
            await pipe.execute()
        return ref

    async def get(self, ref: events_pb2.PartRef) -> Part | None:
        data = await self.r.get(self.prefix + ref.sha256)
        if data is None or hashlib.sha256(data).hexdigest() != ref.sha256:
            return None
        return Part(ref.media_type, data, ref.name)


def part_ref(part: Part) -> events_pb2.PartRef:
    return events_pb2.PartRef(sha256=part.sha256, media_type=part.media_type, size=len(part.data), name=part.name)
