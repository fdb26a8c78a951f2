"""Circuit breakers, one per expert in each router replica: stop asking an expert that keeps failing.

closed: the expert is eligible. After `failures` consecutive failed or timed-out answers
the breaker opens: the expert is left out of every decision for `cooldown_s` (its
requests go to the others, or fail at once when it was the only one allowed). Then
half-open: it is eligible again and the next request sent to it is a probe; the probe's
success closes the breaker, its failure opens it for another cool-down. The last expert
whose breaker is not open never opens (everything failing at once is the platform's
failure, not the experts'). Each replica judges from its own traffic; the state shows in ListExperts and `router_circuit_state`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from . import metrics

CLOSED, HALF_OPEN, OPEN = "closed", "half_open", "open"
LEVEL = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}


@dataclass
class Breaker:
    failures: int
    cooldown_s: float
    clock: Callable[[], float] = time.monotonic
    _state: str = CLOSED
    streak: int = 0
    opened_at: float = 0.0
    probing: bool = False

    @property
    def state(self) -> str:
        if self._state == OPEN and self.clock() - self.opened_at >= self.cooldown_s:
            self._state, self.probing = HALF_OPEN, False
        return self._state

    def allows(self) -> bool:
        """May the policy choose this expert now? (half-open: while no probe is out)"""
        state = self.state
        return state == CLOSED or (state == HALF_OPEN and not self.probing)

    def retry_after(self) -> float:
        return max(self.cooldown_s - (self.clock() - self.opened_at), 0.0) if self.state == OPEN else 0.0

    def dispatched(self) -> None:
        if self.state == HALF_OPEN:
            self.probing = True

    def record(self, ok: bool, may_open: bool = True) -> bool:
        """An answer (or its absence) from the expert; True when this opened the breaker."""
        state, self.probing = self.state, False
        if ok:
            self.streak, self._state = 0, CLOSED
            return False
        self.streak += 1
        if may_open and (state == HALF_OPEN or (state == CLOSED and self.streak >= self.failures)):
            self._state, self.opened_at = OPEN, self.clock()
            return True
        return False


@dataclass
class Breakers:
    """The replica's breakers by expert name; `failures=0` turns them off."""
    failures: int = 5
    cooldown_s: float = 30.0
    clock: Callable[[], float] = time.monotonic
    _by_expert: dict[str, Breaker] = field(default_factory=dict)

    def _get(self, expert: str) -> Breaker:
        if expert not in self._by_expert:
            self._by_expert[expert] = Breaker(self.failures, self.cooldown_s, self.clock)
        return self._by_expert[expert]

    def state(self, expert: str) -> str:
        return self._get(expert).state if self.failures else CLOSED

    def split(self, eligible: list[str]) -> tuple[list[str], list[str]]:
        """(experts that may be chosen, experts left out by an open breaker)."""
        if not self.failures:
            return eligible, []
        shut = [e for e in eligible if not self._get(e).allows()]
        return [e for e in eligible if e not in shut], shut

    def retry_after(self, experts: list[str]) -> float:
        return min((self._get(e).retry_after() for e in experts), default=0.0)

    def dispatched(self, expert: str) -> None:
        if self.failures:
            self._get(expert).dispatched()

    def release(self, expert: str) -> None:
        """The request never reached the expert (the event log was down): no verdict."""
        if self.failures:
            self._get(expert).probing = False

    def record(self, expert: str, ok: bool, fleet: list[str] = ()) -> None:
        """`fleet`: every configured expert. The last one whose breaker is not open never
        opens: when everything fails at once the platform is failing (a slow broker, an
        overloaded host), and shutting every door would turn a slowdown into an outage."""
        if not self.failures:
            return
        breaker = self._get(expert)
        last = bool(fleet) and all(self.state(e) == OPEN for e in fleet if e != expert)
        if breaker.record(ok, may_open=not last):
            metrics.CIRCUIT_OPENED.labels(expert).inc()
        elif last and not ok and breaker.streak >= self.failures:
            metrics.CIRCUIT_KEPT.labels(expert).inc()
        metrics.CIRCUIT.labels(expert).set(LEVEL[breaker.state])
