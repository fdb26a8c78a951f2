"""Versioned policy snapshots in Redis.

A snapshot is a set of named parts (for disjoint-arm policies, one per expert) so that
several learner shards can each publish the arms they own without overwriting the
others. Every publish creates a new global version whose manifest maps each part to the
version that last wrote it; the last `keep` manifests are retained for rollback. A
learner publishes a part only if it is still the version it read (compare-and-set): a part
that several learners write (a policy with one shared model) is never overwritten with a
copy that missed another's rewards.

Keys under `<prefix>policy:<name>:`
  counter               last version number handed out
  current               the version routers serve
  manifest:<v>          hash part -> version of that part's bytes
  part:<part>:<v>       the part's bytes
  history               list of retained versions, newest first
  seen:<event id>       reward ids already applied (the learner's dedupe)
  offsets               hash "<topic>:<partition>" -> next reward offset to read (only grows)
and the pub/sub channel `<prefix>policy:<name>:versions` announces each new current.
"""
from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

_PUBLISH = """
local p = ARGV[1]
local keep = tonumber(ARGV[2])
local cur = redis.call('GET', p .. 'current')
local nexpect = tonumber(ARGV[3])
local i = 4
for _ = 1, nexpect do
  local have = 0
  if cur then have = tonumber(redis.call('HGET', p .. 'manifest:' .. cur, ARGV[i]) or '0') end
  if have ~= tonumber(ARGV[i + 1]) then return -1 end
  i = i + 2
end
local nparts = tonumber(ARGV[i]); i = i + 1
local v = redis.call('INCR', p .. 'counter')
local m = p .. 'manifest:' .. v
if cur then
  local old = redis.call('HGETALL', p .. 'manifest:' .. cur)
  if #old > 0 then redis.call('HSET', m, unpack(old)) end
end
for _ = 1, nparts do
  redis.call('SET', p .. 'part:' .. ARGV[i] .. ':' .. v, ARGV[i + 1])
  redis.call('HSET', m, ARGV[i], v)
  i = i + 2
end
if redis.call('EXISTS', m) == 0 then redis.call('HSET', m, '__empty__', 0) end
local nseen = tonumber(ARGV[i]); local ttl = tonumber(ARGV[i + 1]); i = i + 2
for _ = 1, nseen do
  redis.call('SET', p .. 'seen:' .. ARGV[i], 1, 'EX', ttl)
  i = i + 1
end
local noff = tonumber(ARGV[i]); i = i + 1
for _ = 1, noff do
  local old = tonumber(redis.call('HGET', p .. 'offsets', ARGV[i]) or '-1')
  if tonumber(ARGV[i + 1]) > old then redis.call('HSET', p .. 'offsets', ARGV[i], ARGV[i + 1]) end
  i = i + 2
end
redis.call('SET', p .. 'current', v)
redis.call('LPUSH', p .. 'history', v)
while redis.call('LLEN', p .. 'history') > keep do
  local gone = redis.call('RPOP', p .. 'history')
  local parts = redis.call('HGETALL', p .. 'manifest:' .. gone)
  local kept = redis.call('LRANGE', p .. 'history', 0, -1)
  for j = 1, #parts, 2 do
    local used = false
    for _, kv in ipairs(kept) do
      if redis.call('HGET', p .. 'manifest:' .. kv, parts[j]) == parts[j + 1] then used = true; break end
    end
    if not used then redis.call('DEL', p .. 'part:' .. parts[j] .. ':' .. parts[j + 1]) end
  end
  redis.call('DEL', p .. 'manifest:' .. gone)
end
redis.call('PUBLISH', p .. 'versions', v)
return v
"""

_OFFSETS = """
local p = ARGV[1]
for i = 2, #ARGV, 2 do
  local old = tonumber(redis.call('HGET', p .. 'offsets', ARGV[i]) or '-1')
  if tonumber(ARGV[i + 1]) > old then redis.call('HSET', p .. 'offsets', ARGV[i], ARGV[i + 1]) end
end
return 1
"""

_ROLLBACK = """
local p = ARGV[1]
if redis.call('EXISTS', p .. 'manifest:' .. ARGV[2]) == 0 then return 0 end
redis.call('SET', p .. 'current', ARGV[2])
redis.call('PUBLISH', p .. 'versions', ARGV[2])
return 1
"""


class SnapshotConflict(Exception):
    """A part changed in Redis since the publisher read it (another learner wrote it, or a
    rollback moved it): nothing was written; read it again and redo the work."""


@dataclass
class Snapshot:
    version: int
    manifest: dict[str, int]          # part -> version of its bytes
    parts: dict[str, bytes]


class SnapshotStore:
    def __init__(self, redis: aioredis.Redis, prefix: str, policy: str, keep: int = 20):
        if keep < 2:
            raise ValueError("keep must be >= 2 so that a rollback target exists")
        self.redis = redis
        self.key = f"{prefix}policy:{policy}:"
        self.keep = keep
        self._publish = redis.register_script(_PUBLISH)
        self._rollback = redis.register_script(_ROLLBACK)
        self._offsets = redis.register_script(_OFFSETS)

    @property
    def channel(self) -> str:
        return self.key + "versions"

    async def current_version(self) -> int:
        v = await self.redis.get(self.key + "current")
        return int(v) if v else 0

    async def publish(self, parts: dict[str, bytes], seen_ids: list[str] = (), seen_ttl_s: int = 86_400,
                      offsets: dict[str, int] | None = None, expect: dict[str, int] | None = None) -> int:
        """Write changed parts, the reward ids they applied and the input offsets they reach,
        atomically; return the new version. `expect` (part -> the version of it the new bytes
        were computed from, 0: none in Redis) makes it a compare-and-set: when the current
        snapshot holds another version of any of them, nothing is written and
        SnapshotConflict is raised (two learners sharing a part must not overwrite each other)."""
        expect = expect or {}
        args: list = [self.key, self.keep, len(expect)]
        for name, version in expect.items():
            args += [name, int(version)]
        args.append(len(parts))
        for name, blob in parts.items():
            args += [name, blob]
        args += [len(seen_ids), seen_ttl_s, *seen_ids]
        offsets = offsets or {}
        args.append(len(offsets))
        for where, offset in offsets.items():
            args += [where, int(offset)]
        version = int(await self._publish(args=args))
        if version < 0:
            raise SnapshotConflict(f"parts {sorted(expect)} changed in Redis since version(s) {expect}")
        return version

    async def record_offsets(self, offsets: dict[str, int]) -> None:
        """Input offsets reached by a batch that changed no part (duplicates, dead letters)."""
        if offsets:
            await self._offsets(args=[self.key, *(x for kv in offsets.items() for x in (kv[0], int(kv[1])))])

    async def offsets(self) -> dict[str, int]:
        """"<topic>:<partition>" -> the next offset a learner should read."""
        return {k.decode(): int(v) for k, v in (await self.redis.hgetall(self.key + "offsets")).items()}

    async def rollback(self, version: int) -> None:
        if not await self._rollback(args=[self.key, version]):
            raise KeyError(f"version {version} is not retained (only the last {self.keep} are)")

    async def history(self) -> list[int]:
        return [int(v) for v in await self.redis.lrange(self.key + "history", 0, -1)]

    async def load(self, have: dict[str, int] | None = None, only: set[str] | None = None,
                   retries: int = 5) -> Snapshot | None:
        """The current snapshot; parts whose version is already in `have`, or not in `only`
        (when given), are not fetched."""
        have = have or {}
        for _ in range(retries):
            version = await self.current_version()
            if not version:
                return None
            raw = await self.redis.hgetall(f"{self.key}manifest:{version}")
            manifest = {k.decode(): int(v) for k, v in raw.items() if k != b"__empty__"}
            wanted = [n for n, pv in manifest.items() if have.get(n) != pv and (only is None or n in only)]
            blobs = await self.redis.mget([f"{self.key}part:{n}:{manifest[n]}" for n in wanted]) if wanted else []
            if all(b is not None for b in blobs):
                return Snapshot(version, manifest, dict(zip(wanted, blobs)))
        raise RuntimeError(f"snapshot for {self.key} kept changing while loading")

    async def unseen(self, ids: list[str]) -> list[bool]:
        """For each id: True when no published snapshot has applied it yet."""
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for i in ids:
                pipe.exists(self.key + "seen:" + i)
            return [not bool(x) for x in await pipe.execute()]
