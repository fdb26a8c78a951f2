"""Per-tenant limits on real routers over the session's Kafka and Redis: a request rate
shared by two replicas (one bucket in Redis), and a budget that steers a tenant over it to
the cheaper expert."""
from __future__ import annotations

import asyncio

import grpc
import pytest

from common.codec import decode
from common.experts import ExpertCatalog
from common.settings import RouterSettings
from proto import events_pb2, router_pb2, router_pb2_grpc
from router_svc.app import RouterApp
from router_svc.metrics import TENANT_REQUESTS
from stack.experts_file import write_catalog
from tests.helpers import bounded, read_topic


@pytest.fixture
async def routers(stack, prefix, embedder, two_kind_data, tmp_path):
    replay = {"backend": "replay", "options": {"data": str(two_kind_data)}}
    catalog = ExpertCatalog.from_file(write_catalog(tmp_path / "experts.toml", {
        "mathbot": {**replay, "premium": True, "price_per_call": 0.01},
        "triviabot": {**replay, "price_per_call": 0.001}}))
    settings = dict(kafka_bootstrap=stack.kafka_bootstrap, redis_url=stack.redis_url, topic_prefix=prefix, port=0,
                    budget_step=5.0, tenant_limits={"acme": {"rate_per_s": 0.5, "burst": 2},
                                                    "thrifty": {"budget_per_query": 0.0005}})
    apps = [await RouterApp(RouterSettings(**settings, seed=i), catalog, embedder=embedder).start() for i in (1, 2)]
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{a.port}") for a in apps]
    yield apps, [router_pb2_grpc.RouterStub(c) for c in channels]
    for c in channels:
        await c.close()
    for a in apps:
        await bounded(a.stop(grace=1), 60, "stopping a router")


def decide(tenant: str, query: str = "What is 2 plus 2?") -> router_pb2.DecideRequest:
    return router_pb2.DecideRequest(query=query, options=router_pb2.RouteOptions(tenant=tenant))


async def test_a_tenant_over_its_rate_is_refused_on_every_replica_with_retry_after(routers):
    _, (a, b) = routers
    refused = TENANT_REQUESTS.labels("acme", "rate_limited")._value.get()
    await a.Decide(decide("acme"))
    await a.Decide(decide("acme"))                                    # the burst of 2 is spent
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await b.Decide(decide("acme"))                                # the other replica shares the bucket
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "over its rate of 0.5" in err.value.details()
    wait_ms = int(dict(err.value.trailing_metadata())["retry-after-ms"])
    assert 0 < wait_ms <= 2000
    await b.Decide(decide("globex"))                                  # other tenants are not limited
    await asyncio.sleep(wait_ms / 1000 + 0.05)
    await b.Decide(decide("acme"))                                    # a token has come back
    assert TENANT_REQUESTS.labels("acme", "rate_limited")._value.get() == refused + 1


async def test_a_tenant_over_its_budget_is_steered_to_the_cheaper_expert(routers, stack, prompts):
    apps, (a, _) = routers
    ids = {"thrifty": [], "lavish": []}
    for i in range(24):
        for tenant in ids:
            ids[tenant].append((await a.Decide(decide(tenant, prompts["math"][i]))).decision_id)
    wanted = set(ids["thrifty"] + ids["lavish"])
    events = await read_topic(stack.kafka_bootstrap, apps[0].s.decisions_topic,
                              lambda ms: wanted <= {m.decision_id for m in ms},
                              decode=lambda v: decode(v, events_pb2.DecisionEvent))
    by_id = {m.decision_id: m for m in events}
    thrifty = [by_id[d] for d in ids["thrifty"]]
    lavish = [by_id[d] for d in ids["lavish"]]
    weights = [d.cost_weight for d in thrifty]
    assert weights[0] == 0 and all(w2 >= w1 for w1, w2 in zip(weights, weights[1:])) and weights[-1] > 50
    assert [d.chosen_expert for d in thrifty[-6:]] == ["triviabot"] * 6
    assert {d.cost_weight for d in lavish} == {0.0}                   # no budget, no pacing
