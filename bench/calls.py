"""Timed gRPC calls for the benchmarks: one meaning of answered, failed and lost.

A call is given the request's deadline plus a grace; one that gets no reply of any kind
by then (neither a response nor a status) is lost, whatever the router was doing.
"""
from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

import grpc
import numpy as np


@dataclass
class Tally:
    name: str
    sent: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)
    lost: int = 0
    wall_s: float = 0.0
    ids: list[str] = field(default_factory=list)        # decision ids of the answered calls

    def summary(self) -> dict:
        lat = np.array(self.latencies) * 1000 if self.latencies else np.array([np.nan])
        return {"name": self.name, "sent": self.sent, "ok": len(self.latencies), "errors": dict(self.errors),
                "lost": self.lost, "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
                "throughput_qps": len(self.latencies) / self.wall_s if self.wall_s else 0.0}


async def timed(tally: Tally, call, deadline_s: float, grace_s: float):
    """Await `call(timeout=...)`, counting it in `tally`; the response, or None when it failed."""
    tally.sent += 1
    began = time.monotonic()
    try:
        resp = await call(timeout=deadline_s + grace_s)
    except grpc.aio.AioRpcError as exc:
        if time.monotonic() - began >= deadline_s + grace_s - 0.05:
            tally.lost += 1
        else:
            tally.errors[exc.code().name] += 1
        return None
    tally.latencies.append(time.monotonic() - began)
    tally.ids.append(resp.decision_id)
    return resp


async def paced(rate: float, seconds: float | None, count: int | None, start_one) -> None:
    """Open loop: call `start_one(i)` (which must not block) at `rate` per second, for
    `seconds` or `count` calls, whatever the answers' latency."""
    start, n = time.monotonic(), 0
    while (seconds is None or time.monotonic() - start < seconds) and (count is None or n < count):
        due = start + n / rate
        if due > time.monotonic():
            await asyncio.sleep(due - time.monotonic())
        start_one(n)
        n += 1
