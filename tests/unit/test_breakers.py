"""The circuit breaker's states on a hand-moved clock."""
from __future__ import annotations

from router_svc.breakers import CLOSED, HALF_OPEN, OPEN, Breakers


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_opens_after_repeated_failures_half_opens_after_the_cooldown_and_closes_on_a_probe():
    clock = Clock()
    b = Breakers(failures=3, cooldown_s=10, clock=clock)
    for ok in (False, False, True, False, False):          # a success resets the streak
        b.dispatched("x")
        b.record("x", ok)
    assert b.state("x") == CLOSED and b.split(["x", "y"]) == (["x", "y"], [])
    b.record("x", False)
    assert b.state("x") == OPEN and b.split(["x", "y"]) == (["y"], ["x"])
    clock.t += 4
    assert b.retry_after(["x"]) == 6
    clock.t += 6
    assert b.state("x") == HALF_OPEN and b.split(["x"]) == (["x"], [])
    b.dispatched("x")                                        # the probe is out: nobody else goes
    assert b.split(["x"]) == ([], ["x"])
    b.record("x", False)                                     # the probe failed: another cool-down
    assert b.state("x") == OPEN
    clock.t += 10
    b.dispatched("x")
    b.release("x")                                           # never reached the expert: no verdict
    assert b.split(["x"]) == (["x"], [])
    b.dispatched("x")
    b.record("x", True)
    assert b.state("x") == CLOSED and b.split(["x"]) == (["x"], [])


def test_failures_zero_turns_breakers_off():
    b = Breakers(failures=0)
    for _ in range(100):
        b.record("x", False)
    assert b.state("x") == CLOSED and b.split(["x"]) == (["x"], [])


def test_the_last_closed_breaker_never_opens():
    """Everything failing at once is the platform's failure: one expert stays eligible."""
    b = Breakers(failures=2, cooldown_s=10, clock=Clock())
    fleet = ["x", "y"]
    for _ in range(2):
        b.record("x", False, fleet)
    assert b.state("x") == OPEN
    for _ in range(5):
        b.record("y", False, fleet)
    assert b.state("y") == CLOSED and b.split(fleet) == (["y"], ["x"])
    b.record("y", True, fleet)
    assert b.state("y") == CLOSED
