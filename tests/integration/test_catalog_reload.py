"""Experts added, repriced and removed by editing the catalog file, with the router and the
workers running (real Kafka and Redis, in this process); a broken file changes nothing."""
from __future__ import annotations

import grpc
import pytest

from common.catalog_watch import RELOADS
from common.experts import ExpertCatalog
from common.settings import RouterSettings, WorkerSettings
from proto import router_pb2, router_pb2_grpc
from router_svc.app import RouterApp
from stack.experts_file import write_catalog
from tests.helpers import bounded, eventually
from workers.main import WorkerApp


async def test_catalog_edits_apply_live_and_bad_ones_are_refused(stack, prefix, embedder, two_kind_data, prompts,
                                                                  tmp_path):
    replay = {"backend": "replay", "options": {"data": str(two_kind_data)}}
    experts = {"mathbot": {**replay, "premium": True, "price_per_call": 0.01},
               "triviabot": {**replay, "price_per_call": 0.001}}
    path = write_catalog(tmp_path / "experts.toml", experts)
    common = dict(kafka_bootstrap=stack.kafka_bootstrap, redis_url=stack.redis_url, topic_prefix=prefix,
                  experts_file=path, catalog_poll_s=0.2)
    workers = await WorkerApp(WorkerSettings(**common), ExpertCatalog.from_file(path)).start()
    router = await RouterApp(RouterSettings(**common, port=0, seed=1, default_timeout_ms=5000),
                             ExpertCatalog.from_file(path), embedder=embedder).start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{router.port}")
    stub = router_pb2_grpc.RouterStub(channel)

    async def names() -> list[str]:
        return [e.name for e in (await stub.ListExperts(router_pb2.ListExpertsRequest())).experts]

    async def listed(name: str) -> bool:
        return name in await names()

    def only(expert: str) -> router_pb2.RouteRequest:
        return router_pb2.RouteRequest(query=prompts["math"][0],
                                       options=router_pb2.RouteOptions(allowed_experts=[expert]))

    try:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Route(only("newbot"))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        # Added: routable at once, served by a pool the worker started for it.
        experts["newbot"] = {"backend": "replay", "price_per_call": 0.002,
                             "options": {"data": str(two_kind_data), "outcomes_of": "mathbot"}}
        write_catalog(path, experts)
        await eventually(lambda: "newbot" in workers.pools, timeout=30)
        await eventually(lambda: listed("newbot"), timeout=30)
        resp = await stub.Route(only("newbot"))
        assert resp.expert == "newbot" and resp.answer.startswith("[newbot]")

        # Repriced: the router lists the new price, the worker's pool restarts with the new entry.
        experts["newbot"]["price_per_call"] = 0.003
        write_catalog(path, experts)
        await eventually(lambda: "newbot" in workers.pools and workers.pools["newbot"].expert.price_per_call == 0.003,
                         timeout=30)

        async def repriced() -> bool:
            listing = await stub.ListExperts(router_pb2.ListExpertsRequest())
            return next(e.price_per_call for e in listing.experts if e.name == "newbot") == pytest.approx(0.003)

        await eventually(repriced, timeout=30)
        assert (await stub.Route(only("newbot"))).expert == "newbot"

        # A broken file is refused and counted; the last good catalog stays in force.
        refused = RELOADS.labels("rejected")._value.get()
        path.write_text("[experts.oops\nbackend = ")
        await eventually(lambda: RELOADS.labels("rejected")._value.get() >= refused + 2, timeout=30)
        assert set(await names()) == {"mathbot", "triviabot", "newbot"} and set(workers.pools) == set(await names())

        # Removed: no longer eligible, its pool stopped; the others carry on.
        del experts["triviabot"]
        write_catalog(path, experts)
        await eventually(lambda: "triviabot" not in workers.pools, timeout=30)
        # The router's watcher polls on its own clock: it may apply the change a poll after the workers'.
        async def unlisted() -> bool:
            return not await listed("triviabot")

        await eventually(unlisted, timeout=30)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Route(only("triviabot"))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "unknown expert" in err.value.details()
        assert (await stub.Route(only("mathbot"))).expert == "mathbot"
    finally:
        await bounded(channel.close(), 30, "closing the channel")
        await bounded(router.stop(grace=1), 60, "stopping the router")
        await bounded(workers.stop(), 60, "stopping the workers")

