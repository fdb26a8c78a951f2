"""Requests scored together: the decisions whose embeddings came back in one micro-batch
resume in the same turn of the event loop, and each asks the policy for a choice. A
linear policy's choice is bound by reading every expert's d x d matrix (9 experts at 472
features: 8 MB per request), so the requests that ask in the same turn are scored in one
`select_many`: the matrices are read once for all of them, on the loop's one thread."""
from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import NamedTuple

import numpy as np

from bandit.policies import Choice, Policy


class _Ask(NamedTuple):
    policy: Policy
    x: np.ndarray
    eligible: list[str]
    cost_weight: float
    prices: dict[str, float]
    answer: asyncio.Future


class BatchedSelect:
    def __init__(self):
        self._pending: list[_Ask] = []

    async def select(self, policy: Policy, x: np.ndarray, eligible: list[str], cost_weight: float,
                     prices: dict[str, float]) -> Choice:
        """`policy.select(...)`, answered with the others asked in this turn of the loop."""
        loop = asyncio.get_running_loop()
        if not self._pending:                   # the first this turn: score after the others asked
            loop.call_soon(self._flush)
        ask = _Ask(policy, x, eligible, cost_weight, prices, loop.create_future())
        self._pending.append(ask)
        return await ask.answer

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        groups: dict[tuple, list[_Ask]] = defaultdict(list)
        for ask in pending:                     # one batch per policy object and eligible set
            groups[(id(ask.policy), tuple(ask.eligible))].append(ask)
        for asks in groups.values():
            policy = asks[0].policy
            try:
                choices = policy.select_many([a.x for a in asks], asks[0].eligible, [a.cost_weight for a in asks],
                                             [a.prices for a in asks])
            except Exception:                   # one bad request must not fail the others: one by one
                for a in asks:
                    _settle(a.answer, policy.select, a.x, a.eligible, a.cost_weight, a.prices)
                continue
            for a, choice in zip(asks, choices):
                if not a.answer.done():         # its caller may have been cancelled meanwhile
                    a.answer.set_result(choice)


def _settle(answer: asyncio.Future, select, *args) -> None:
    try:
        choice = select(*args)
    except Exception as exc:
        if not answer.done():
            answer.set_exception(exc)
        return
    if not answer.done():
        answer.set_result(choice)
