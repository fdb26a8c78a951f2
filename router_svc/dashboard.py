"""The live dashboard's data: what every replica decided, how experts answered, what was learned.

`Board` folds the shared event topics (decisions, results, rewards, dead letters) into
time buckets over a sliding window; `DashboardFeed` reads those topics from `window_s`
ago onwards (no consumer group: every HTTP process sees all traffic, whichever replica
served it) and feeds the board. The page (static/dashboard.html) polls `snapshot()`.

Always-premium is estimated, not run: its cost is the premium expert's list price for
each routed query (the decision's `prices`); its quality the switch doubly-robust
estimate the OPE uses (simulations/ope.py, tau 10): per rewarded decision, the policy's
own estimate of the premium's quality for that query, corrected by the observed quality
where the premium was chosen with a weight 1/propensity of at most SWITCH_TAU. Plain IPS
is useless here: a near-greedy policy gives the premium a propensity of ~0.002 where it
does not choose it, so a few hundred decisions carry almost no weight for those queries.
"""
from __future__ import annotations

import asyncio
import logging
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from aiokafka import TopicPartition

from common.codec import BadEvent, decode
from common.kafka import make_consumer, now_ms, poll_forever, topic_partitions
from common.lifecycle import cancel_task
from common.settings import RouterSettings
from proto import events_pb2

log = logging.getLogger(__name__)
PERCENTILES = (50, 95, 99)
SWITCH_TAU = 10.0
MAX_ROWS = 50_000               # decisions (and updates waiting for theirs) the board remembers


@dataclass
class Bucket:
    traffic: Counter = field(default_factory=Counter)        # decisions by chosen expert
    premium_price: float = 0.0                               # sum of the premium's list price
    priced: int = 0
    expert_s: list = field(default_factory=list)             # expert call latencies
    end_to_end_s: list = field(default_factory=list)         # decision to the answer served
    fallbacks: int = 0
    failures: int = 0
    rewards: int = 0
    quality: float = 0.0
    cost: float = 0.0
    premium_dr: float = 0.0                                  # sum of the premium's switch-DR terms
    premium_dr_n: int = 0
    dead_letters: int = 0
    policy_version: int = 0


def _round(x: float | None, digits: int = 6) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), digits)


class Board:
    def __init__(self, premium: Callable[[], str], bucket_s: float = 10.0, window_s: float = 900.0,
                 last_n: int = 20):
        self.premium, self.bucket_ms, self.window_ms = premium, int(bucket_s * 1000), int(window_s * 1000)
        self.buckets: dict[int, Bucket] = {}
        self.recent: deque[dict] = deque(maxlen=last_n)
        self._by_id: OrderedDict[str, dict] = OrderedDict()    # decision id -> its ts and table row
        self._early: OrderedDict[str, list] = OrderedDict()     # decision id -> row updates that came first
        self.versions: list[dict] = []                          # policy version changes
        self.letters: deque[dict] = deque(maxlen=10)
        self.policy = ""

    def _bucket(self, ts_ms: int) -> Bucket:
        start = ts_ms - ts_ms % self.bucket_ms
        if start not in self.buckets:
            self.buckets[start] = Bucket()
            horizon = ts_ms - self.window_ms - self.bucket_ms
            for old in [b for b in self.buckets if b < horizon]:
                del self.buckets[old]
        return self.buckets[start]

    def add_decision(self, ev: events_pb2.DecisionEvent) -> None:
        b = self._bucket(ev.ts_ms)
        b.traffic[ev.chosen_expert] += 1
        b.policy_version = max(b.policy_version, ev.policy_version)
        premium = self.premium()
        if premium in ev.prices:
            b.premium_price += ev.prices[premium]
            b.priced += 1
        self.policy = ev.policy_name
        if not self.versions or ev.policy_version > self.versions[-1]["version"]:
            self.versions.append({"version": ev.policy_version, "ts_ms": ev.ts_ms, "policy": ev.policy_name})
        row = {"decision_id": ev.decision_id, "ts_ms": ev.ts_ms, "chosen": ev.chosen_expert,
               "propensity": _round(ev.propensity), "cost_weight": _round(ev.cost_weight),
               "modality": ev.modality, "tenant": ev.tenant, "policy_version": ev.policy_version,
               "scores": {name: {"quality": _round(s.estimated_quality), "cost": _round(s.estimated_cost),
                                 "bonus": _round(s.exploration_bonus), "score": _round(s.score),
                                 "probability": _round(ev.probabilities.get(name, 0.0))}
                          for name, s in sorted(ev.scores.items(), key=lambda kv: -kv[1].score)},
               "answered_by": None, "ok": None, "latency_s": None, "quality": None, "cost": None,
               "premium_q_hat": ev.scores[premium].estimated_quality if premium in ev.scores else None}
        self.recent.append(row)
        self._by_id[ev.decision_id] = row
        while len(self._by_id) > MAX_ROWS:
            self._by_id.popitem(last=False)
        for apply in self._early.pop(ev.decision_id, ()):
            apply(row)

    def _on_row(self, decision_id: str, apply: Callable[[dict], None]) -> None:
        """Apply to the decision's row now, or when the decision arrives: the feed reads four
        topics, and Kafka orders a partition, not topics, so a result or a reward can come
        first (a loaded broker hands them over in any order)."""
        row = self._by_id.get(decision_id)
        if row is not None:
            apply(row)
            return
        self._early.setdefault(decision_id, []).append(apply)
        while len(self._early) > MAX_ROWS:
            self._early.popitem(last=False)

    def add_result(self, r: events_pb2.ExpertResult) -> None:
        if r.partial:
            return
        b = self._bucket(r.ts_ms)
        if r.latency_s > 0:
            b.expert_s.append(r.latency_s)
        b.fallbacks += r.fallback
        b.failures += not r.ok

        def apply(row: dict) -> None:
            if r.ok or row["answered_by"] is None:
                if r.ok:                      # the answer the caller got: decision to answer
                    b.end_to_end_s.append(max(r.ts_ms - row["ts_ms"], 0) / 1000.0)
                row.update(answered_by=r.expert, ok=r.ok, latency_s=_round(r.latency_s, 3))
        self._on_row(r.decision_id, apply)

    def add_reward(self, rw: events_pb2.RewardEvent) -> None:
        b = self._bucket(rw.ts_ms)
        b.rewards += 1
        b.quality += rw.quality
        b.cost += rw.cost

        def apply(row: dict) -> None:
            row.update(quality=_round(rw.quality), cost=_round(rw.cost))
            q_hat = row["premium_q_hat"]
            if q_hat is not None:
                weight = 1.0 / rw.propensity if rw.expert == self.premium() and rw.propensity > 0 else 0.0
                b.premium_dr += q_hat + (weight * (rw.quality - q_hat) if weight <= SWITCH_TAU else 0.0)
                b.premium_dr_n += 1
        self._on_row(rw.decision_id, apply)

    def add_dead_letter(self, d: events_pb2.DeadLetter) -> None:
        self._bucket(d.ts_ms or now_ms()).dead_letters += 1
        self.letters.append({"ts_ms": d.ts_ms, "source_topic": d.source_topic, "reason": d.reason[:300],
                             "component": d.component})

    def snapshot(self, now: int | None = None) -> dict:
        now = now or now_ms()
        starts = [s for s in sorted(self.buckets) if s >= now - self.window_ms]
        buckets = [self.buckets[s] for s in starts]
        experts = sorted({e for b in buckets for e in b.traffic})
        share = {e: [b.traffic[e] / max(sum(b.traffic.values()), 1) if b.traffic else None for b in buckets]
                 for e in experts}

        def pct(values: list, q: int) -> float | None:
            return _round(np.percentile(values, q), 4) if values else None

        def running(num: Callable[[Bucket], float], den: Callable[[Bucket], float]) -> list:
            n = d = 0.0
            out = []
            for b in buckets:
                n, d = n + num(b), d + den(b)
                out.append(_round(n / d) if d else None)
            return out

        rewards = sum(b.rewards for b in buckets)
        decided = sum(sum(b.traffic.values()) for b in buckets)
        premium = self.premium()
        totals = {
            "decisions": decided, "rewards": rewards,
            "premium_share": _round(sum(b.traffic[premium] for b in buckets) / decided) if decided else None,
            "quality": _round(sum(b.quality for b in buckets) / rewards) if rewards else None,
            "premium_quality": _round(sum(b.premium_dr for b in buckets) / max(sum(b.premium_dr_n for b in buckets), 1))
            if any(b.premium_dr_n for b in buckets) else None,
            "cost": _round(sum(b.cost for b in buckets) / rewards) if rewards else None,
            "premium_cost": _round(sum(b.premium_price for b in buckets) / max(sum(b.priced for b in buckets), 1)),
            "fallbacks": sum(b.fallbacks for b in buckets), "failures": sum(b.failures for b in buckets),
            "dead_letters": sum(b.dead_letters for b in buckets),
        }
        return {
            "now_ms": now, "bucket_s": self.bucket_ms / 1000, "window_s": self.window_ms / 1000,
            "premium": premium, "policy": self.policy,
            "policy_version": self.versions[-1]["version"] if self.versions else None,
            "versions": self.versions[-20:], "totals": totals,
            "t": [s / 1000 for s in starts], "share": share,
            "quality": {"router": running(lambda b: b.quality, lambda b: b.rewards),
                        "premium": running(lambda b: b.premium_dr, lambda b: b.premium_dr_n)},
            "cost": {"router": running(lambda b: b.cost, lambda b: b.rewards),
                     "premium": running(lambda b: b.premium_price, lambda b: b.priced)},
            "latency": {**{f"expert_p{q}": [pct(b.expert_s, q) for b in buckets] for q in PERCENTILES},
                        **{f"end_to_end_p{q}": [pct(b.end_to_end_s, q) for b in buckets] for q in PERCENTILES}},
            "errors": {"fallbacks": [b.fallbacks for b in buckets], "failures": [b.failures for b in buckets],
                       "dead_letters": [b.dead_letters for b in buckets]},
            "policy_version_series": [b.policy_version or None for b in buckets],
            "recent": list(reversed(self.recent)), "dead_letters": list(reversed(self.letters)),
        }


class DashboardFeed:
    """Reads the shared topics into a Board, from `window_s` ago, in this process's loop."""

    def __init__(self, settings: RouterSettings, board: Board):
        self.s, self.board = settings, board
        self.kinds = {settings.decisions_topic: (events_pb2.DecisionEvent, board.add_decision),
                      settings.results_topic: (events_pb2.ExpertResult, board.add_result),
                      settings.rewards_topic: (events_pb2.RewardEvent, board.add_reward),
                      settings.dead_letter_topic: (events_pb2.DeadLetter, board.add_dead_letter)}
        self._consumer = make_consumer(settings.kafka_bootstrap, group_id=None, auto_offset_reset="latest")
        self._task: asyncio.Task | None = None
        self.undecodable = 0

    async def start(self) -> None:
        c = self._consumer
        await c.start()
        found = await topic_partitions(self.s.kafka_bootstrap, list(self.kinds))
        tps = [TopicPartition(topic, p) for topic, parts in found.items() for p in parts]
        c.assign(tps)
        since = now_ms() - int(self.board.window_ms)
        offsets = await c.offsets_for_times({tp: since for tp in tps})
        ends = await c.end_offsets(tps)      # resolved now: nothing written after start is skipped
        for tp in tps:
            c.seek(tp, offsets[tp].offset if offsets.get(tp) else ends[tp])
        self._task = asyncio.create_task(self._run(), name="dashboard-feed")

    async def stop(self) -> None:
        await cancel_task(self._task)
        await self._consumer.stop()

    async def _run(self) -> None:
        await poll_forever(self._consumer, self._batch, "dashboard feed", max_records=2000)

    def _batch(self, batches: dict) -> None:
        for tp, records in batches.items():
            cls, add = self.kinds[tp.topic]
            for rec in records:
                try:
                    add(decode(rec.value, cls))
                except BadEvent:
                    self.undecodable += 1   # dead-lettered by its own consumer; not ours to judge
