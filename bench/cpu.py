"""Where a run's cores went: CPU time per process of the stack, read from /proc (Linux).

A loaded router on a small machine is bound by the cores it shares with the broker, the
workers and the load generator itself, not by anything it waits on; this shows by how
much. Each figure is cores used: CPU seconds (user + system, every thread) over the run's
wall time. A process without /proc (another OS, or one outside this machine) is left out.
"""
from __future__ import annotations

import os
import time

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float | None:
    """User + system seconds the process has used so far; None when it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()   # after the command name, which may hold spaces
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK      # utime, stime: fields 14 and 15 of stat


class CpuMeter:
    """Cores used per named process between construction and `used()`."""

    def __init__(self, pids: dict[str, int]):
        self.pids = pids
        self.start = {name: cpu_seconds(pid) for name, pid in pids.items()}
        self.t0 = time.monotonic()

    def used(self) -> dict[str, float]:
        wall = max(time.monotonic() - self.t0, 1e-9)
        out = {}
        for name, pid in self.pids.items():
            now, then = cpu_seconds(pid), self.start[name]
            if now is not None and then is not None:
                out[name] = round((now - then) / wall, 3)
        out["total"] = round(sum(out.values()), 3)
        return out
