"""The router's copy of the policy, kept in step with the learner's snapshots in Redis.

Routers never write the policy. A watcher task listens for "new version" messages on the
snapshot channel (and polls, in case a message is missed or Redis restarts) and loads the
changed parts in place; selection never awaits, so a request sees either the old or the
new parameters, never a mix, and nothing restarts.
"""
from __future__ import annotations

import asyncio
import logging

from redis.exceptions import RedisError

from common.lifecycle import cancel_task, stop_within
from common.snapshots import SnapshotStore

from . import metrics
from bandit.policies import Policy

log = logging.getLogger(__name__)


class LivePolicy:
    def __init__(self, policy: Policy, store: SnapshotStore, poll_s: float = 1.0, name: str = ""):
        self.policy = policy
        self.name = name or policy.name      # the configured name: what decisions log, what keys Redis
        self.store = store
        self.poll_s = poll_s
        self.version = 0
        self._have: dict[str, int] = {}
        self._task: asyncio.Task | None = None
        self._stopping = False

    async def start(self) -> None:
        try:
            await self.refresh()
        except RedisError as exc:
            log.warning("no snapshot loaded at start (%s); serving the prior", exc)
        self._task = asyncio.create_task(self._watch(), name="snapshot-watcher")

    async def stop(self) -> None:
        self._stopping = True   # redis-py can swallow a cancellation inside get_message
        await cancel_task(self._task)

    async def refresh(self) -> bool:
        """Load the current snapshot when it differs from ours; True when it changed."""
        snap = await self.store.load(self._have)
        if snap is None or snap.version == self.version:
            return False
        self.policy.load_parts(snap.parts)
        # Parts that left the manifest (an expert removed by a rollback) are dropped from `have`.
        self._have = dict(snap.manifest)
        self.version = snap.version
        metrics.POLICY_VERSION.labels(self.name).set(snap.version)
        log.info("policy %s now at version %d", self.name, self.version)
        return True

    async def _watch(self) -> None:
        while not self._stopping:
            pubsub = None
            try:
                pubsub = self.store.redis.pubsub()
                await pubsub.subscribe(self.store.channel)
                while not self._stopping:
                    await pubsub.get_message(ignore_subscribe_messages=True, timeout=self.poll_s)
                    await self.refresh()   # on a message, or every poll_s
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis down or restarted: keep serving, retry
                log.warning("snapshot watcher: %s; retrying", exc)
                await asyncio.sleep(self.poll_s)
            finally:
                if pubsub is not None:   # bounded: a half-dead connection must not block shutdown
                    await stop_within(pubsub.aclose(), 2, "snapshot subscription")
