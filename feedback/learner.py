"""The learner: applies rewards to the policy and publishes versioned snapshots to Redis.

Rewards are keyed by expert, so Kafka gives each expert's rewards to exactly one learner
in the group: one writer per arm. Before applying a batch the learner reloads any arm
whose version in Redis is not the one it last wrote (a partition moved here, or an
operator rolled back). The applied reward ids are written in the same Redis transaction
as the snapshot, so a redelivered reward is recognised and skipped: at-least-once
delivery, exactly-once effect.
"""
from __future__ import annotations

import logging

import numpy as np

from common.snapshots import SnapshotStore
from proto import events_pb2
from router_svc.policies import Policy
from router_svc.policies.base import META

from . import metrics

log = logging.getLogger(__name__)


class Learner:
    def __init__(self, policy: Policy, store: SnapshotStore, seen_ttl_s: int):
        self.policy = policy
        self.store = store
        self.seen_ttl_s = seen_ttl_s
        self.version = 0
        self._have: dict[str, int] = {}   # part -> version our in-memory copy corresponds to
        self.applied = 0
        self.skipped = 0

    async def _sync(self, experts: set[str]) -> None:
        """Bring the arms we are about to update (and meta) up to Redis' current version."""
        if self.version and self.version == await self.store.current_version():
            return
        wanted = {self.policy.part_of(e) for e in experts} | {META}
        snap = await self.store.load(self._have, only=wanted)   # other shards' arms stay in Redis
        if snap is None:
            return
        self.policy.load_parts(snap.parts)
        self._have.update({k: v for k, v in snap.manifest.items() if k in wanted})

    async def apply(self, rewards: list[events_pb2.RewardEvent]) -> int:
        """Apply a batch; returns the published version (0 when nothing new)."""
        unique: dict[str, events_pb2.RewardEvent] = {}
        for r in rewards:
            unique.setdefault(r.reward_id, r)
        fresh = [r for r, new in zip(unique.values(), await self.store.unseen(list(unique))) if new]
        self.skipped += len(rewards) - len(fresh)
        metrics.REPEATS.inc(len(rewards) - len(fresh))
        if not fresh:
            return 0
        experts = {r.expert for r in fresh}
        await self._sync(experts)
        for r in fresh:
            self.policy.update(r.expert, np.asarray(r.context, dtype=np.float64), r.quality, r.cost)
        parts = self.policy.parts(sorted(experts))
        version = await self.store.publish(parts, [r.reward_id for r in fresh], self.seen_ttl_s)
        self._have.update({k: version for k in parts})
        self.version = version
        self.applied += len(fresh)
        metrics.LEARNED.inc(len(fresh))
        metrics.SNAPSHOT_VERSION.set(version)
        log.info("learned %d rewards (%s); snapshot v%d", len(fresh), ",".join(sorted(experts)), version)
        return version
