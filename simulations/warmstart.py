"""`python -m simulations.warmstart`: start a policy warm from a routing data set.

A team that holds labelled traffic (every expert's quality and cost on some queries, the
format of data/README.md) need not let the router learn from zero: each labelled row
updates every expert's arm once (full information), and the result is published to Redis
as the policy's first snapshot, which routers and learners then load and keep learning
from. The replay's `--warm-start` uses the same function on the train split.

The snapshot must match what the services run: the same policy, hyperparameters
(BR_POLICY_PARAMS) and embedding model. Costs stay in the data set's unit, the unit the
workers report. A store that already holds a version is left alone unless --force.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import numpy as np

from bandit.policies import POLICIES, Policy, make_policy

from . import supervised
from common.dataset import RoutingDataset


def pretrain(policy: Policy, x: np.ndarray, quality: np.ndarray, cost: np.ndarray, experts: list[str],
             rows: np.ndarray) -> Policy:
    """Update every expert's arm with its outcome on each of `rows` (indices), in order."""
    for i in rows:
        for k, expert in enumerate(experts):
            policy.update(expert, x[i], float(quality[i, k]), float(cost[i, k]))
    return policy


def labelled_rows(ds: RoutingDataset, which: str) -> np.ndarray:
    """"train": the data set's train split (or a seeded 70% when it has none); "all": every row."""
    if which == "all":
        return np.arange(len(ds.rows))
    return np.flatnonzero(supervised.train_mask([r.split for r in ds.rows]))


async def publish(policy: Policy, redis_url: str, topic_prefix: str, force: bool) -> int:
    from common.redis_client import connect
    from common.snapshots import SnapshotStore

    r = connect(redis_url)
    try:
        store = SnapshotStore(r, f"br:{topic_prefix}", policy.name)
        current = await store.current_version()
        if current and not force:
            raise SystemExit(f"{policy.name} already has snapshot v{current} in {redis_url} "
                             f"(prefix {topic_prefix!r}); --force publishes over it as a new version")
        return await store.publish(policy.parts())
    finally:
        await r.aclose()


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="routing data set (.jsonl, meta beside it)")
    p.add_argument("--policy", default="linucb", help=f"one of {sorted(POLICIES)}")
    p.add_argument("--params", default="{}", help="the policy's hyperparameters as JSON: BR_POLICY_PARAMS")
    p.add_argument("--rows", choices=("train", "all"), default="train", help="which labelled rows to learn from")
    p.add_argument("--redis-url", default="redis://127.0.0.1:16379/0")
    p.add_argument("--topic-prefix", default="", help="BR_TOPIC_PREFIX of the deployment")
    p.add_argument("--embedding-model", default="", help="sentence-transformers name or path (the routers')")
    p.add_argument("--force", action="store_true", help="publish even if the store already holds a version")
    p.add_argument("--skip-bad", action="store_true", help="skip and count bad rows instead of stopping")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.policy not in POLICIES:
        raise SystemExit(f"unknown policy {args.policy!r}; registered: {sorted(POLICIES)}")
    try:
        params = json.loads(args.params)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"--params is not JSON: {exc}") from None
    ds = RoutingDataset.load_or_exit(args.data, skip_bad=args.skip_bad)
    from .embeddings import contexts

    x, _, model = contexts(ds, args.embedding_model)
    try:
        policy = make_policy(args.policy, x.shape[1], params)
    except (ValueError, TypeError) as exc:
        raise SystemExit(f"--params for {args.policy}: {exc}") from None
    rows = labelled_rows(ds, args.rows)
    t0 = time.monotonic()
    quality, cost = ds.outcome_arrays()
    pretrain(policy, x, quality, cost, ds.experts, rows)
    version = asyncio.run(publish(policy, args.redis_url, args.topic_prefix, args.force))
    print(f"{args.policy} trained on {len(rows)} labelled rows x {len(ds.experts)} experts of {ds.name} "
          f"({time.monotonic() - t0:.1f}s, contexts from {model}); published as snapshot v{version}")


if __name__ == "__main__":
    main()
