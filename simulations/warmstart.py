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
import time
from pathlib import Path

import numpy as np

from bandit.policies import POLICIES, Policy, make_policy
from common.cli import add_deployment_args, settings_from
from common.dataset import RoutingDataset
from common.settings import PolicySettings

from . import supervised


def pretrain(policy: Policy, x: np.ndarray, quality: np.ndarray, cost: np.ndarray, experts: list[str],
             rows: np.ndarray) -> Policy:
    """Teach the policy every expert's outcome on each of `rows` (indices), in order."""
    rows = np.asarray(rows, dtype=int)
    policy.pretrain(x[rows], quality[rows], cost[rows], experts)
    return policy


def labelled_rows(ds: RoutingDataset, which: str) -> np.ndarray:
    """"train": the data set's train split (or a seeded 70% when it has none); "all": every row."""
    if which == "all":
        return np.arange(len(ds.rows))
    return np.flatnonzero(supervised.train_mask([r.split for r in ds.rows]))


def learn_and_publish(ds: RoutingDataset, rows, s: PolicySettings, embedding_model: str = "",
                      hints: tuple[str, ...] = (), force: bool = False, log=print,
                      backend: str = "") -> tuple[int, str]:
    """Build the policy `s` names, learn every expert's outcome on `rows` of `ds`, publish it
    as a snapshot: (its version, the embedding model the contexts came from). `backend` as
    the routers' BR_EMBEDDING_BACKEND ("" = their default here), so the policy learns on the
    vectors it will be asked about (int8 ones differ from torch's by a cosine of up to 0.011)."""
    from bandit.embedder import default_backend

    from .embeddings import contexts

    x, _, model = contexts(ds, embedding_model, log=log, hints=hints, backend=backend or default_backend())
    try:
        policy = make_policy(s.policy, x.shape[1], s.policy_params)
    except (ValueError, TypeError) as exc:
        raise SystemExit(f"--params for {s.policy}: {exc}") from None
    quality, cost = ds.outcome_arrays()
    pretrain(policy, x, quality, cost, ds.experts, rows)
    return asyncio.run(publish(policy, s, force)), model


async def publish(policy: Policy, s: PolicySettings, force: bool) -> int:
    from common.redis_client import connect
    from common.snapshots import SnapshotStore

    r = connect(s.redis_url)
    try:
        store = SnapshotStore(r, s.redis_prefix, policy.name)
        current = await store.current_version()
        if current and not force:
            raise SystemExit(f"{policy.name} already has snapshot v{current} in {s.redis_url} "
                             f"(prefix {s.topic_prefix!r}); --force publishes over it as a new version")
        return await store.publish(policy.parts())
    finally:
        await r.aclose()


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="routing data set (.jsonl, meta beside it)")
    add_deployment_args(p, redis=True, policy=True)
    p.add_argument("--rows", choices=("train", "all"), default="train", help="which labelled rows to learn from")
    p.add_argument("--embedding-model", default="", help="sentence-transformers name or path (the routers')")
    p.add_argument("--hints", default="", metavar="FIELDS",
                   help="row fields to learn as request hints (e.g. task): the routers must then be sent them")
    p.add_argument("--embedding-backend", default="", choices=["", "torch", "onnx", "onnx-int8"],
                   help="the routers' BR_EMBEDDING_BACKEND (default: theirs here, onnx-int8 on a CPU, torch on CUDA)")
    p.add_argument("--force", action="store_true", help="publish even if the store already holds a version")
    p.add_argument("--skip-bad", action="store_true", help="skip and count bad rows instead of stopping")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    s = settings_from(args)
    if s.policy not in POLICIES:
        raise SystemExit(f"unknown policy {s.policy!r}; registered: {sorted(POLICIES)}")
    from .embeddings import parse_hints

    hints = parse_hints(args.hints)
    ds = RoutingDataset.load_or_exit(args.data, skip_bad=args.skip_bad)
    rows = labelled_rows(ds, args.rows)
    t0 = time.monotonic()
    version, model = learn_and_publish(ds, rows, s, args.embedding_model, hints, args.force,
                                       backend=args.embedding_backend)
    print(f"{s.policy} trained on {len(rows)} labelled rows x {len(ds.experts)} experts of {ds.name} "
          f"({time.monotonic() - t0:.1f}s, contexts from {model}); published as snapshot v{version}")


if __name__ == "__main__":
    main()
