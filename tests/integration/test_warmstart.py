"""A policy trained offline on labelled rows, published to the real Redis, served by a router."""
from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from bandit.context import HINT_SLOTS, MODALITIES, context_dim, hint_slots
from bandit.policies import make_policy
from common.experts import ExpertCatalog
from common.redis_client import connect
from common.settings import RouterSettings
from common.snapshots import SnapshotStore
from proto import router_pb2
from router_svc.app import RouterApp
from simulations import warmstart
from common.dataset import RoutingDataset
from stack.experts_file import write_catalog
from tests.helpers import bounded

PARAMS = {"alpha": 0.2, "epsilon": 0.0, "project_to": 64}


async def test_warm_snapshot_is_what_a_new_router_serves(stack, prefix, embedder, two_kind_data, tmp_path):
    args = ["--data", str(two_kind_data), "--policy", "linucb", "--params", json.dumps(PARAMS),
            "--redis-url", stack.redis_url, "--topic-prefix", prefix,
            "--embedding-backend", "torch"]        # the router below embeds with the session's torch embedder
    await bounded(asyncio.to_thread(warmstart.main, args), 120, "warm start")
    r = connect(stack.redis_url)
    store = SnapshotStore(r, f"br:{prefix}", "linucb")
    assert await store.current_version() == 1
    with pytest.raises(SystemExit, match="already has snapshot v1"):   # a learned policy is not clobbered
        await asyncio.to_thread(warmstart.main, args)
    with pytest.raises(SystemExit, match=r"--hints 'tenant': rows can pass only \['task'\]"):
        await asyncio.to_thread(warmstart.main, [*args, "--hints", "tenant"])
    assert await store.current_version() == 1
    await r.aclose()

    replay = {"backend": "replay", "options": {"data": str(two_kind_data)}}
    catalog = ExpertCatalog.from_file(write_catalog(tmp_path / "experts.toml", {
        "mathbot": {**replay, "premium": True}, "triviabot": replay}))
    router = await RouterApp(RouterSettings(kafka_bootstrap=stack.kafka_bootstrap, redis_url=stack.redis_url,
                                            topic_prefix=prefix, port=0, policy="linucb", policy_params=PARAMS, seed=5),
                             catalog, embedder=embedder).start()
    try:
        assert router.live.version == 1
        ds = RoutingDataset.load(two_kind_data)
        held_out = np.setdiff1d(np.arange(len(ds.rows)), warmstart.labelled_rows(ds, "train"))[:60]
        good = {"math": "mathbot", "trivia": "triviabot"}
        right = 0
        for i in held_out:
            d = await router.core.decide(ds.rows[i].prompt, router_pb2.RouteOptions(), 0)
            right += d.event.chosen_expert == good[ds.rows[i].task]
        assert right >= 57, right                   # of 60 unseen queries, before a single live reward
    finally:
        await bounded(router.stop(grace=1), 60, "stopping the router")



async def test_warm_start_learns_the_rows_hints(stack, prefix, two_kind_data):
    """`--hints task`: every labelled row's task lands in its hint slot of the context,
    so the published arms carry weight there (the routers must then be sent the hint)."""
    args = ["--data", str(two_kind_data), "--policy", "linucb", "--params", json.dumps({"alpha": 0.2}),
            "--redis-url", stack.redis_url, "--topic-prefix", prefix + "h", "--hints", "task"]
    await bounded(asyncio.to_thread(warmstart.main, args), 120, "warm start with hints")
    r = connect(stack.redis_url)
    try:
        snap = await SnapshotStore(r, f"br:{prefix}h", "linucb").load()
    finally:
        await r.aclose()
    policy = make_policy("linucb", context_dim(384), {"alpha": 0.2})
    policy.load_parts(snap.parts)
    hints_at = 384 + 2 + len(MODALITIES)
    for task in ("math", "trivia"):
        for slot in hint_slots("task", task):
            assert policy.arms["mathbot"].b_q[hints_at + slot] > 0 or policy.arms["mathbot"].b_c[hints_at + slot] > 0, task
    untouched = set(range(hints_at, hints_at + HINT_SLOTS)) - {hints_at + s for t in ("math", "trivia") for s in hint_slots("task", t)}
    assert not any(policy.arms["mathbot"].b_c[i] for i in untouched)
