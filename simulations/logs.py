"""Logged decisions: exported from the Kafka topics, loaded for off-policy evaluation.

One JSON line per rewarded decision: the context the policy saw, the chosen expert, its
propensity, the probabilities of every eligible expert, and the reward's quality and
cost. Bad lines raise an error naming the line, or are skipped and counted.
"""
from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from common.codec import BadEvent, decode
from common.kafka import make_consumer
from common.settings import InfraSettings
from proto import events_pb2


async def read_all(bootstrap: str, topic: str, cls) -> list:
    """Every decodable event on the topic, from the beginning to the end offsets now."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if topic not in await admin.list_topics():
            return []
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    parts = [TopicPartition(topic, p["partition"]) for p in described[0]["partitions"]]
    consumer = make_consumer(bootstrap, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        end = await consumer.end_offsets(parts)
        events = []
        while any([await consumer.position(tp) < end[tp] for tp in parts]):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    try:
                        events.append(decode(r.value, cls))
                    except BadEvent:
                        pass   # already dead-lettered by the consumers that own the topic
        return events
    finally:
        await consumer.stop()


async def rewarded_decisions(s: InfraSettings) -> list[dict]:
    """router.decisions joined with router.rewards by decision_id (the first reward of each),
    one dict per rewarded decision in the export's line format."""
    bootstrap = s.kafka_bootstrap
    decisions = {d.decision_id: d for d in await read_all(bootstrap, s.decisions_topic, events_pb2.DecisionEvent)}
    rows, seen = [], set()
    for r in await read_all(bootstrap, s.rewards_topic, events_pb2.RewardEvent):
        d = decisions.get(r.decision_id)
        if d is None or r.decision_id in seen:
            continue
        seen.add(r.decision_id)
        rows.append({
            "decision_id": d.decision_id, "context": list(d.context), "chosen_expert": d.chosen_expert,
            "propensity": d.propensity, "probabilities": dict(d.probabilities), "prices": dict(d.prices),
            "quality": r.quality, "cost": r.cost, "cost_weight": d.cost_weight, "policy_name": d.policy_name,
            "policy_version": d.policy_version, "ts_ms": d.ts_ms,
            "shadows": {name: {"expert": c.expert, "probabilities": dict(c.probabilities),
                               "policy_version": c.policy_version} for name, c in d.shadows.items()}})
    return rows


async def export(s: InfraSettings, out: Path) -> int:
    """Write the rewarded decisions as JSON lines; returns the rows written."""
    rows = await rewarded_decisions(s)
    with out.open("w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    return len(rows)


class LogError(ValueError):
    pass


@dataclass
class LoggedDecisions:
    rows: list[dict]
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def experts(self) -> list[str]:
        return sorted({e for r in self.rows for e in r["probabilities"]})


def load(path: Path, skip_bad: bool = False) -> LoggedDecisions:
    rows, skipped = [], {}
    with Path(path).open() as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rows.append(_check(line))
            except LogError as exc:
                if not skip_bad:
                    raise LogError(f"{Path(path).name} line {lineno}: {exc}") from None
                reason = str(exc).split(":")[0]
                skipped[reason] = skipped.get(reason, 0) + 1
    if not rows:
        raise LogError(f"{path}: no usable logged decisions")
    dims = {len(r["context"]) for r in rows}
    if len(dims) > 1:
        raise LogError(f"{path}: contexts of different lengths {sorted(dims)}")
    return LoggedDecisions(rows, skipped)


def _check(line: str) -> dict:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise LogError(f"invalid JSON: {exc}") from None
    for key in ("context", "chosen_expert", "propensity", "probabilities", "quality", "cost"):
        if key not in row:
            raise LogError(f"missing field: {key!r}")
    p = row["propensity"]
    if not isinstance(p, (int, float)) or not math.isfinite(p) or p <= 0:
        raise LogError(f"zero propensity: {p!r} for decision {row.get('decision_id', '?')}")
    if row["chosen_expert"] not in row["probabilities"]:
        raise LogError(f"unknown expert: {row['chosen_expert']!r} is not among the logged probabilities")
    for key in ("quality", "cost"):
        if not isinstance(row[key], (int, float)) or not math.isfinite(row[key]):
            raise LogError(f"bad {key}: {row[key]!r}")
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in row["context"]):
        raise LogError("bad context: non-numeric or non-finite values")
    prices = row.get("prices", {})
    if not isinstance(prices, dict) or not all(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0
                                               for v in prices.values()):
        raise LogError(f"bad prices: {prices!r} (expected expert -> cost >= 0)")
    return row


def main_export(argv=None) -> None:
    import argparse

    from common.cli import add_deployment_args, settings_from

    ap = argparse.ArgumentParser(description="Export rewarded decisions from Kafka to JSON lines.")
    add_deployment_args(ap, kafka=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    n = asyncio.run(export(settings_from(args), args.out))
    print(f"{n} rewarded decisions written to {args.out}")


if __name__ == "__main__":
    main_export()
