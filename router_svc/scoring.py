"""Requests scored together: the decisions whose embeddings came back in one micro-batch
resume in the same turn of the event loop, and each asks the policy for a choice. A
linear policy's choice is bound by reading every expert's d x d matrix (9 experts at 472
features: 8 MB per request), so the requests that ask in the same turn are scored in one
`select_many`: the matrices are read once for all of them, on the loop's one thread."""
from __future__ import annotations

import asyncio
from collections import defaultdict

import numpy as np

from bandit.policies import Choice, Policy


class BatchedSelect:
    def __init__(self):
        self._pending: list[tuple] = []

    async def select(self, policy: Policy, x: np.ndarray, eligible: list[str], cost_weight: float,
                     prices: dict[str, float]) -> Choice:
        """`policy.select(...)`, answered with the others asked in this turn of the loop."""
        loop = asyncio.get_running_loop()
        if not self._pending:                   # the first this turn: score after the others asked
            loop.call_soon(self._flush)
        fut = loop.create_future()
        self._pending.append((policy, x, eligible, cost_weight, prices, fut))
        return await fut

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        groups: dict[tuple, list[tuple]] = defaultdict(list)
        for item in pending:                    # one batch per policy object and eligible set
            groups[(id(item[0]), tuple(item[2]))].append(item)
        for (_, eligible), items in groups.items():
            policy = items[0][0]
            try:
                choices = policy.select_many([i[1] for i in items], eligible, [i[3] for i in items],
                                             [i[4] for i in items])
            except Exception:                   # one bad request must not fail the others: one by one
                for _, x, elig, w, prices, fut in items:
                    _settle(fut, lambda: policy.select(x, elig, w, prices))
                continue
            for item, choice in zip(items, choices):
                if not item[5].done():          # its caller may have been cancelled meanwhile
                    item[5].set_result(choice)


def _settle(fut: asyncio.Future, call) -> None:
    try:
        result = call()
    except Exception as exc:
        if not fut.done():
            fut.set_exception(exc)
        return
    if not fut.done():
        fut.set_result(result)
