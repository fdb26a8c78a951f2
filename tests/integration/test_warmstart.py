"""A policy trained offline on labelled rows, published to the real Redis, served by a router."""
from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

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
            "--redis-url", stack.redis_url, "--topic-prefix", prefix]
    await bounded(asyncio.to_thread(warmstart.main, args), 120, "warm start")
    r = connect(stack.redis_url)
    store = SnapshotStore(r, f"br:{prefix}", "linucb")
    assert await store.current_version() == 1
    with pytest.raises(SystemExit, match="already has snapshot v1"):   # a learned policy is not clobbered
        await asyncio.to_thread(warmstart.main, args)
    await r.aclose()

    replay = {"backend": "replay", "options": {"data": str(two_kind_data)}}
    catalog = ExpertCatalog.from_file(write_catalog(tmp_path / "experts.toml", {
        "mathbot": {**replay, "premium": True}, "triviabot": replay}))
    router = await RouterApp(RouterSettings(kafka_bootstrap=stack.kafka_bootstrap, redis_url=stack.redis_url,
                                            topic_prefix=prefix, port=0, policy_params=PARAMS, seed=5),
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

