"""Which named policy serves, and the audit trail of every change to it.

Routers run every configured policy (PolicySettings.policy_specs): the one named by the
Redis key `<prefix>serving` chooses, the others shadow it. The key is absent until the
first promotion, so BR_POLICY serves a fresh deployment. `./run.sh promote` and
`./run.sh rollback` change it (or the snapshot version); each change and each refused
promotion is an AuditEvent on router.audit, so who changed what serves, when, and on
what evidence sits in the event log beside the decisions it affected.
"""
from __future__ import annotations

import getpass
import socket
import uuid

import redis.asyncio as aioredis

from proto import events_pb2

from .kafka import ensure_topics, make_producer, now_ms
from .settings import InfraSettings

_SWITCH = """
local key, hist, name, default, keep, expected = KEYS[1], KEYS[2], ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local before = redis.call('GET', key) or default
if before == name or (expected ~= '' and before ~= expected) then return before end
redis.call('SET', key, name)
redis.call('LPUSH', hist, before)
redis.call('LTRIM', hist, 0, keep - 1)
return before
"""

_UNDO = """
local key, hist, default = KEYS[1], KEYS[2], ARGV[1]
local before = redis.call('LPOP', hist)
if not before then return false end
local now = redis.call('GET', key) or default
redis.call('SET', key, before)
return now
"""


class ServingPointer:
    """The name of the serving policy in Redis; `default` (BR_POLICY) when none is set."""

    def __init__(self, redis: aioredis.Redis, prefix: str, default: str, keep: int = 50):
        self.redis, self.default, self.keep = redis, default, keep
        self.key, self.history_key = f"{prefix}serving", f"{prefix}serving:history"
        self._switch = redis.register_script(_SWITCH)
        self._undo = redis.register_script(_UNDO)

    async def get(self) -> str:
        name = await self.redis.get(self.key)
        return name.decode() if name else self.default

    async def switch(self, name: str, expected: str = "") -> str:
        """Serve `name`, only if `expected` serves now (when given); returns the name that
        served before (remembered for undo). Compare it with `expected` to see if it switched."""
        before = await self._switch(keys=[self.key, self.history_key],
                                    args=[name, self.default, self.keep, expected])
        return before.decode()

    async def undo(self) -> tuple[str, str] | None:
        """Serve the policy served before the last switch: (from, to), or None when no switch is recorded."""
        before = await self._undo(keys=[self.key, self.history_key], args=[self.default])
        return None if before is None else (before.decode(), await self.get())

    async def history(self) -> list[str]:
        """The names served before the current one, newest first."""
        return [v.decode() for v in await self.redis.lrange(self.history_key, 0, -1)]


def audit_event(action: str, *, from_policy: str, to_policy: str, from_version: int = 0, to_version: int = 0,
                reason: str = "", figures: dict[str, float] | None = None) -> events_pb2.AuditEvent:
    return events_pb2.AuditEvent(
        audit_id=str(uuid.uuid4()), ts_ms=now_ms(), action=action, actor=f"{getpass.getuser()}@{socket.gethostname()}",
        from_policy=from_policy, to_policy=to_policy, from_version=from_version, to_version=to_version,
        reason=reason, figures=figures or {})


async def send_audit(s: InfraSettings, event: events_pb2.AuditEvent) -> None:
    """Write the event to router.audit and wait for the broker's ack."""
    await ensure_topics(s.kafka_bootstrap, {s.audit_topic: 1})
    producer = make_producer(s.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(s.audit_topic, event.SerializeToString(), key=event.to_policy.encode())
    finally:
        await producer.stop()
