"""The learner: applies rewards to the policy and publishes versioned snapshots to Redis.

Rewards are keyed by expert, so Kafka gives each expert's rewards to exactly one learner
in the group: one writer per arm. Before a batch touches an arm, the learner makes sure
its copy of that arm is Redis' current one: an arm it has not loaded since it started
(a restart, a partition moved here) is loaded whatever the version, and when anyone else
changed the snapshot (another shard, an operator's rollback) everything is reloaded.
The applied reward ids and the input offsets are written in the same Redis transaction
as the snapshot, so a redelivered reward is recognised and skipped: at-least-once
delivery, exactly-once effect. A batch that fails half way (Redis down while publishing)
leaves no trace in memory: the policy is rebuilt from Redis before the batch is retried.
"""
from __future__ import annotations

import logging
from typing import Callable

import numpy as np

from common.snapshots import SnapshotConflict, SnapshotStore
from proto import events_pb2
from bandit.policies import Policy
from bandit.policies.base import META

from . import metrics

log = logging.getLogger(__name__)


class Learner:
    CONFLICT_RETRIES = 50        # another learner publishing the same part between our read and write

    def __init__(self, make_policy: Callable[[], Policy], store: SnapshotStore, seen_ttl_s: int):
        self.make_policy = make_policy
        self.store = store
        self.seen_ttl_s = seen_ttl_s
        self.skipped = 0
        self.forget()

    def forget(self) -> None:
        """Forget everything in memory; what is needed is loaded again from Redis."""
        self.policy = self.make_policy()
        self.version = 0                      # the snapshot version our copy is at
        self._have: dict[str, int] = {}       # part -> version of it in our copy (0: not in Redis)

    async def _sync(self, wanted: set[str]) -> None:
        """Make the parts in `wanted` Redis' current ones in our copy."""
        current = await self.store.current_version()
        if current != self.version:           # someone else wrote (a shard, a rollback): start over
            self.forget()
        missing = wanted - set(self._have)
        if not missing:
            return
        snap = await self.store.load(only=missing)   # other shards' arms stay in Redis
        if snap is not None:
            self.policy.load_parts(snap.parts)
            self.version = snap.version
        for part in missing:
            self._have[part] = snap.manifest.get(part, 0) if snap else 0

    async def apply(self, rewards: list[events_pb2.RewardEvent], offsets: dict[str, int] | None = None) -> int:
        """Apply a batch; `offsets` ("topic:partition" -> next offset) are stored with it.
        Returns the published version (0 when nothing new). When another learner published
        a part of ours between our read and our write (a shared model, a rebalance), nothing
        was written: the batch is applied again to Redis' newer copy."""
        for _ in range(self.CONFLICT_RETRIES):
            try:
                version, repeats = await self._apply_once(rewards, offsets)
            except SnapshotConflict:
                metrics.CONFLICTS.inc()
                continue
            self.skipped += repeats
            metrics.REPEATS.inc(repeats)
            return version
        raise SnapshotConflict(f"{self.CONFLICT_RETRIES} publishes in a row lost to other writers")

    async def _apply_once(self, rewards: list[events_pb2.RewardEvent],
                          offsets: dict[str, int] | None) -> tuple[int, int]:
        """(the published version or 0, how many rewards were repeats)."""
        unique: dict[str, events_pb2.RewardEvent] = {}
        for r in rewards:
            unique.setdefault(r.reward_id, r)
        fresh = [r for r, new in zip(unique.values(), await self.store.unseen(list(unique))) if new]
        repeats = len(rewards) - len(fresh)
        if not fresh:
            await self.store.record_offsets(offsets or {})
            return 0, repeats
        experts = {r.expert for r in fresh}
        try:
            await self._sync({self.policy.part_of(e) for e in experts} | {META})
            for r in fresh:
                self.policy.update(r.expert, np.asarray(r.context, dtype=np.float64), r.quality, r.cost)
            parts = self.policy.parts(sorted(experts))
            read = {k: self._have.get(k, 0) for k in parts if k != META}     # META: settings, the same from every learner
            version = await self.store.publish(parts, [r.reward_id for r in fresh], self.seen_ttl_s, offsets, read)
        except BaseException:
            self.forget()                    # the updates are in memory but maybe not in Redis
            raise
        self._have.update({k: version for k in parts})
        self.version = version
        metrics.LEARNED.inc(len(fresh))
        metrics.SNAPSHOT_VERSION.set(version)
        log.info("learned %d rewards (%s); snapshot v%d", len(fresh), ",".join(sorted(experts)), version)
        return version, repeats
