"""Every configured policy, each kept in step with its snapshots; one serves, the rest shadow.

The serving one is named in Redis (common/serving.py) and polled, so a promotion or a
rollback reaches every replica within `poll_s` without a restart. A name the replica
does not run (a promotion made against other settings) is refused loudly and the
current policy keeps serving: routing with no policy is not an option.
"""
from __future__ import annotations

import asyncio
import logging

import numpy as np
from redis.exceptions import RedisError

from bandit.policies import Choice
from common.lifecycle import cancel_task
from common.serving import ServingPointer
from proto import events_pb2

from . import metrics
from .live_policy import LivePolicy

log = logging.getLogger(__name__)


class PolicySet:
    def __init__(self, lives: dict[str, LivePolicy], pointer: ServingPointer, poll_s: float = 1.0):
        if pointer.default not in lives:
            raise ValueError(f"the default serving policy {pointer.default!r} is not configured")
        self.lives, self.pointer, self.poll_s = lives, pointer, poll_s
        self.serving_name = pointer.default
        self._refused: str | None = None
        self._task: asyncio.Task | None = None

    @property
    def serving(self) -> LivePolicy:
        return self.lives[self.serving_name]

    def shadow_choices(self, x: np.ndarray, eligible: list[str], cost_weight: float,
                       prices: dict[str, float]) -> dict[str, events_pb2.ShadowChoice]:
        """What each shadow would choose here. A shadow that fails is counted, never fatal."""
        out = {}
        for name, live in self.lives.items():
            if name == self.serving_name:
                continue
            try:
                c: Choice = live.policy.select(x, eligible, cost_weight, prices)
            except Exception:
                metrics.SHADOW_ERRORS.labels(name).inc()
                log.exception("shadow policy %s failed to select; the request is served regardless", name)
                continue
            out[name] = events_pb2.ShadowChoice(expert=c.expert, probabilities=c.probabilities,
                                                policy_version=live.version)
        return out

    async def start(self) -> None:
        for live in self.lives.values():
            await live.start()
        try:
            await self.refresh()
        except RedisError as exc:
            log.warning("serving policy unknown at start (%s); serving %s", exc, self.serving_name)
        self._mark()
        self._task = asyncio.create_task(self._watch(), name="serving-watcher")

    async def stop(self) -> None:
        await cancel_task(self._task)
        for live in self.lives.values():
            await live.stop()

    async def refresh(self) -> bool:
        """Serve what Redis names; True when that changed."""
        name = await self.pointer.get()
        if name == self.serving_name:
            return False
        if name not in self.lives:
            if self._refused != name:
                self._refused = name
                log.error("Redis says policy %r serves, but this router runs only %s; still serving %r",
                          name, sorted(self.lives), self.serving_name)
            return False
        log.info("serving policy %s (was %s)", name, self.serving_name)
        self.serving_name, self._refused = name, None
        self._mark()
        return True

    def _mark(self) -> None:
        for name in self.lives:
            metrics.SERVING.labels(name).set(float(name == self.serving_name))

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                await self.refresh()
            except (RedisError, OSError) as exc:     # keep serving what we serve; Redis comes back
                log.debug("serving watcher: %s", exc)
