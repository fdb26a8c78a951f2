"""Per-tenant limits: a request rate shared by every replica, and a budget per query.

A tenant's limits come from `BR_TENANT_LIMITS` (JSON: {"acme": {"rate_per_s": 5, "burst": 10,
"budget_per_query": 0.002}}) and, with auth, from its table in the keys file (which wins).
- The rate is a token bucket in Redis (one per tenant, refilled at `rate_per_s` up to
  `burst`, Redis's own clock), so N replicas together let the tenant through at its rate;
  over it, RESOURCE_EXHAUSTED / 429 with the wait until the next token. Redis unreachable:
  the request goes through (counted); a limiter must not become the outage.
- The budget is the pacing dual (bandit/pacing.py) per tenant: when the tenant's spending
  runs above its budget per query, its requests weigh cost more, so the policy steers them
  to cheaper experts until the mean comes back under.
Metrics carry the tenant's name for configured tenants and "other" for the rest (a caller
cannot blow up the label set by inventing tenants).
"""
from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from bandit.pacing import BudgetPacer

from . import metrics
from .errors import Overloaded

log = logging.getLogger(__name__)

# KEYS[1] bucket; ARGV[1] rate per ms, ARGV[2] burst. Returns {1, 0} (taken) or {0, ms to wait}.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, ts = tonumber(b[1]) or burst, tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(now - ts, 0) * rate)
local taken, wait = 0, math.ceil((1 - tokens) / rate)
if tokens >= 1 then tokens, taken, wait = tokens - 1, 1, 0 end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate) + 1000)
return {taken, wait}
"""


@dataclass(frozen=True)
class Limits:
    rate_per_s: float | None = None
    burst: float | None = None
    budget_per_query: float | None = None

    @classmethod
    def parse(cls, raw: dict, where: str) -> "Limits":
        unknown = set(raw) - {"rate_per_s", "burst", "budget_per_query", "keys", "admin"}
        if unknown:
            raise ValueError(f"{where}: unknown limit(s) {sorted(unknown)}")
        values = {}
        for name in ("rate_per_s", "burst", "budget_per_query"):
            v = raw.get(name)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
                raise ValueError(f"{where}: {name} must be a number > 0, got {v!r}")
            values[name] = float(v)
        if "burst" in values and "rate_per_s" not in values:
            raise ValueError(f"{where}: burst needs rate_per_s")
        return cls(**values)


class Tenants:
    def __init__(self, limits: dict[str, Limits], redis: aioredis.Redis | None, prefix: str,
                 pacing_step: float = 0.05, timeout_s: float = 0.25):
        self.r, self.prefix, self.step, self.timeout_s = redis, f"{prefix}rate:", pacing_step, timeout_s
        self._take = redis.register_script(_TAKE) if redis is not None else None
        self.pacers: dict[str, BudgetPacer] = {}
        self.limits: dict[str, Limits] = {}
        self.configure(limits)

    def configure(self, limits: dict[str, Limits]) -> None:
        """New limits (a reloaded keys file); a tenant whose budget is unchanged keeps its dual."""
        self.limits = dict(limits)
        old, self.pacers = self.pacers, {}
        for name, lim in self.limits.items():
            if lim.budget_per_query:
                kept = old.get(name)
                self.pacers[name] = kept if kept and kept.budget == lim.budget_per_query else \
                    BudgetPacer(lim.budget_per_query, self.step)

    def label(self, tenant: str) -> str:
        return tenant if tenant in self.limits else "other"

    async def admit(self, tenant: str) -> None:
        """Take one request from the tenant's bucket, or refuse with the wait."""
        lim = self.limits.get(tenant)
        if lim is None or lim.rate_per_s is None or self._take is None:
            return
        burst = lim.burst or max(1.0, lim.rate_per_s)
        try:
            taken, wait_ms = await asyncio.wait_for(
                self._take(keys=[self.prefix + tenant], args=[lim.rate_per_s / 1000.0, burst]), self.timeout_s)
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            metrics.RATE_LIMITER_ERRORS.inc()
            log.warning("rate limiter unreachable (%s): letting tenant %s through", exc, tenant)
            return
        if not taken:
            metrics.TENANT_REQUESTS.labels(self.label(tenant), "rate_limited").inc()
            wait = max(int(wait_ms), 1) / 1000.0
            raise Overloaded(f"tenant {tenant!r} is over its rate of {lim.rate_per_s:g} requests/s "
                             f"(burst {burst:g}); retry after {wait:.2f}s", wait)

    def weight(self, tenant: str, cost_weight: float) -> float:
        pacer = self.pacers.get(tenant)
        return pacer.weight(cost_weight) if pacer else cost_weight

    def spent(self, tenant: str, cost: float) -> None:
        metrics.TENANT_COST.labels(self.label(tenant)).inc(max(cost, 0.0))
        pacer = self.pacers.get(tenant)
        if pacer:
            pacer.observe(max(cost, 0.0))
            metrics.TENANT_COST_WEIGHT.labels(tenant).set(pacer.mu)
