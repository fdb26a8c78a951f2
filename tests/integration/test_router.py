"""The router over gRPC with real Kafka, Redis and worker pools (in this process)."""
from __future__ import annotations

import asyncio

import re
import uuid

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from bandit.context import context_dim, hint_slots
from common.codec import decode
from common.experts import ExpertCatalog
from common.kafka import make_producer
from common.settings import RouterSettings, WorkerSettings
from proto import events_pb2, router_pb2, router_pb2_grpc
from router_svc.app import RouterApp
from router_svc.breakers import Breakers
from stack.experts_file import write_catalog
from tests.helpers import bounded, eventually, read_topic
from workers.main import WorkerApp


@pytest.fixture
async def routed(stack, prefix, embedder, two_kind_data, tmp_path):
    """A router and workers for mathbot, triviabot and flaky (always fails); silent has no worker."""
    replay = {"backend": "replay", "options": {"data": str(two_kind_data)}}
    catalog_path = write_catalog(tmp_path / "experts.toml", {
        "mathbot": {**replay, "premium": True, "price_per_call": 0.01, "expected_latency_s": 2.0},
        "triviabot": {**replay, "price_per_call": 0.001, "expected_latency_s": 0.5},
        "flaky": {"backend": "replay", "options": {"data": str(two_kind_data), "outcomes_of": "mathbot",
                                                   "fail_rate": 1.0}},
        "silent": {"backend": "replay", "options": {"data": str(two_kind_data), "outcomes_of": "mathbot"}},
    })
    catalog = ExpertCatalog.from_file(catalog_path)
    common = dict(kafka_bootstrap=stack.kafka_bootstrap, redis_url=stack.redis_url, topic_prefix=prefix)
    workers = await WorkerApp(WorkerSettings(**common, experts="mathbot,triviabot,flaky"), catalog).start()
    router = await RouterApp(RouterSettings(**common, port=0, seed=4, default_timeout_ms=3000), catalog,
                             embedder=embedder).start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{router.port}")
    yield router, router_pb2_grpc.RouterStub(channel), channel
    await bounded(channel.close(), 30, "closing the channel")
    await bounded(router.stop(grace=1), 60, "stopping the router")
    await bounded(workers.stop(), 60, "stopping the workers")


def route(query, **options) -> router_pb2.RouteRequest:
    return router_pb2.RouteRequest(query=query, options=router_pb2.RouteOptions(**options))


async def test_route_answers_and_logs_a_complete_decision(routed, stack, prompts):
    router, stub, _ = routed
    resp = await stub.Route(route(prompts["math"][0], tenant="acme", allowed_experts=["mathbot", "triviabot"],
                                  hints={"task": "gsm8k", "app": "tutor"}))
    assert uuid.UUID(resp.decision_id) and resp.expert in ("mathbot", "triviabot")
    assert resp.answer.startswith(f"[{resp.expert}]") and resp.cost == pytest.approx(0.001)
    assert not resp.fallback and resp.chosen_expert == resp.expert
    decisions = await read_topic(stack.kafka_bootstrap, router.s.decisions_topic,
                                 lambda ms: any(m.decision_id == resp.decision_id for m in ms),
                                 decode=lambda v: decode(v, events_pb2.DecisionEvent))
    ev = next(m for m in decisions if m.decision_id == resp.decision_id)
    assert ev.chosen_expert == resp.expert and ev.propensity == pytest.approx(resp.propensity)
    assert set(ev.probabilities) == {"mathbot", "triviabot"}
    assert sum(ev.probabilities.values()) == pytest.approx(1.0)
    assert len(ev.context) == context_dim(384) and ev.tenant == "acme" and ev.mode == events_pb2.DECISION_MODE_ROUTE
    assert dict(ev.hints) == {"task": "gsm8k", "app": "tutor"}
    assert dict(ev.prices) == pytest.approx({"mathbot": 0.01, "triviabot": 0.001})   # the catalog's
    hinted = [i - 384 - 6 for i, v in enumerate(ev.context) if i >= 384 + 6 and v == 1.0]
    assert sorted(hinted) == sorted(hint_slots("task", "gsm8k") | hint_slots("app", "tutor"))
    assert ev.policy_name == "grouped_ts" and ev.embedding_model.endswith("/384") and ev.feature_version
    assert set(ev.scores) == {"mathbot", "triviabot"}


BIG = "x" * 40_000


@pytest.mark.parametrize("request_, message", [
    (route(""), "query is empty"),
    (route("   \n"), "query is empty"),
    (route(BIG), "query has 40000 characters, the limit is 32768"),
    (route("hi", allowed_experts=["gpt-9"]), r"unknown expert\(s\) \['gpt-9'\]"),
    (route("hi", modality="smell"), "modality 'smell' is not one of"),
    (route("hi", modality="image"), "no configured expert accepts modality 'image'"),
    (route("hi", cost_weight=-1.0), "cost_weight must be a finite number >= 0"),
    (route("hi", cost_weight=float("nan")), "cost_weight must be a finite number >= 0"),
    (route("hi", metadata={"bad key!": "v"}), "metadata key 'bad key!' must match"),
    (route("hi", metadata={"k": "\x00"}), "without NUL bytes"),
    (route("hi", metadata={f"k{i}": "v" for i in range(40)}), "metadata has 40 entries"),
    (route("hi", tenant="t\x07"), "tenant must be printable"),
    (route("hi", hints={f"k{i}": "v" for i in range(9)}), "hints has 9 entries, the limit is 8"),
    (route("hi", hints={"task": ""}), r"hints\['task'\] must be 1 to 128 printable"),
    (route("hi", hints={"a b": "v"}), "hints key 'a b' must match"),
    (route("hi", max_cost=-1.0), "max_cost must be a finite number >= 0"),
    (route("hi", max_latency_s=float("inf")), "max_latency_s must be a finite number >= 0"),
    (route("hi", allowed_experts=["mathbot"], max_cost=0.005), "no eligible expert meets options.max_cost"),
    (router_pb2.RouteRequest(query="hi", timeout_ms=-5), r"timeout_ms must be between 1 and 300000 .*got -5"),
    (router_pb2.RouteRequest(query="hi", timeout_ms=2_000_000_000), "timeout_ms must be between 1 and 300000"),
])
async def test_bad_route_requests_are_invalid_argument(routed, request_, message):
    _, stub, _ = routed
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Route(request_)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert re.search(message, err.value.details()), err.value.details()


@pytest.mark.parametrize("request_, message", [
    (router_pb2.FeedbackRequest(decision_id="abc", quality=0.5), "decision_id 'abc' is not a UUID"),
    (router_pb2.FeedbackRequest(decision_id=str(uuid.uuid4()), quality=2.0), r"quality must be in \[0, 1\]"),
    (router_pb2.FeedbackRequest(decision_id=str(uuid.uuid4()), quality=0.5, cost=-3), "cost must be a finite"),
])
async def test_bad_feedback_is_invalid_argument(routed, request_, message):
    _, stub, _ = routed
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Feedback(request_)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert re.search(message, err.value.details())


async def test_failing_expert_falls_back_and_is_logged(routed, stack, prompts):
    router, stub, _ = routed
    fell_back = []
    for i in range(30):
        resp = await stub.Route(route(prompts["math"][i], allowed_experts=["flaky", "mathbot"]))
        assert resp.expert in ("flaky", "mathbot")
        if resp.chosen_expert == "flaky":
            assert resp.fallback and resp.expert == "mathbot" and resp.answer.startswith("[mathbot]")
            fell_back.append(resp.decision_id)
    assert fell_back, "the seeded policy never chose flaky in 30 tries"
    results = await read_topic(stack.kafka_bootstrap, router.s.results_topic,
                               lambda ms: sum(m.decision_id in fell_back for m in ms) >= 2 * len(fell_back),
                               decode=lambda v: decode(v, events_pb2.ExpertResult))
    mine = [m for m in results if m.decision_id == fell_back[0]]
    assert {(m.attempt, m.expert, m.ok, m.fallback) for m in mine} == {(0, "flaky", False, False),
                                                                      (1, "mathbot", True, True)}


async def test_a_silent_expert_without_fallback_is_deadline_exceeded_and_recorded(routed, stack, prompts):
    """The whole deadline went to the expert: the client gets DEADLINE_EXCEEDED (not an
    event-log error), and the timeout is still recorded as the expert's result."""
    router, stub, _ = routed
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Route(router_pb2.RouteRequest(query=prompts["math"][0], timeout_ms=800,
                                                 options=router_pb2.RouteOptions(allowed_experts=["silent"])))
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED, err.value.details()
    did = dict(err.value.trailing_metadata())["decision-id"]
    results = await read_topic(stack.kafka_bootstrap, router.s.results_topic,
                               lambda ms: any(m.decision_id == did for m in ms),
                               decode=lambda v: decode(v, events_pb2.ExpertResult))
    assert next(m for m in results if m.decision_id == did).error == "no answer before the expert's deadline"


async def test_silent_expert_times_out_to_the_fallback(routed, stack, prompts):
    router, stub, _ = routed
    for i in range(20):
        resp = await stub.Route(router_pb2.RouteRequest(
            query=prompts["math"][i], timeout_ms=1500,
            options=router_pb2.RouteOptions(allowed_experts=["silent", "mathbot"])))
        if resp.chosen_expert == "silent":
            break
    else:
        pytest.fail("the seeded policy never chose silent in 20 tries")
    assert resp.fallback and resp.expert == "mathbot"
    results = await read_topic(stack.kafka_bootstrap, router.s.results_topic,
                               lambda ms: any(m.decision_id == resp.decision_id and m.attempt == 0 for m in ms),
                               decode=lambda v: decode(v, events_pb2.ExpertResult))
    timeout = next(m for m in results if m.decision_id == resp.decision_id and m.attempt == 0)
    assert not timeout.ok and "deadline" in timeout.error and timeout.producer.startswith("router:")


async def test_at_capacity_route_and_decide_are_resource_exhausted_with_retry_after(routed, prompts):
    router, stub, _ = routed
    router.core.max_in_flight = 1
    try:
        held = asyncio.ensure_future(stub.Route(router_pb2.RouteRequest(   # silent: holds the slot 1.5 s
            query=prompts["math"][0], timeout_ms=1500, options=router_pb2.RouteOptions(allowed_experts=["silent"]))))
        await eventually(lambda: router.core.in_flight == 1, timeout=10, interval=0.02)
        for call in (stub.Route(route(prompts["math"][1])), stub.Decide(router_pb2.DecideRequest(query="hi"))):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "at capacity" in err.value.details()
            assert dict(err.value.trailing_metadata())["retry-after-ms"] == "1000"
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await held
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        router.core.max_in_flight = router.core.s.max_in_flight
    assert router.core.in_flight == 0


async def test_the_breaker_opens_on_a_failing_expert_the_fallback_serves_then_a_probe_closes_it(
        routed, stack, prefix, prompts):
    router, stub, _ = routed
    router.core.breakers = Breakers(failures=3, cooldown_s=1.0)
    only_silent = router_pb2.RouteOptions(allowed_experts=["silent"])

    async def circuit(name: str) -> str:
        info = await stub.ListExperts(router_pb2.ListExpertsRequest())
        return next(e.circuit for e in info.experts if e.name == name)

    for i in range(3):                                       # nobody serves silent: three timeouts
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Route(router_pb2.RouteRequest(query=prompts["math"][i], timeout_ms=300, options=only_silent))
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert await circuit("silent") == "open" and await circuit("mathbot") == "closed"
    with pytest.raises(grpc.aio.AioRpcError) as err:         # not asked at all while open
        await stub.Route(router_pb2.RouteRequest(query=prompts["math"][3], timeout_ms=30_000, options=only_silent))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE and "circuit breaker is open (silent" in err.value.details()
    assert 0 < int(dict(err.value.trailing_metadata())["retry-after-ms"]) <= 1000
    both = router_pb2.RouteOptions(allowed_experts=["silent", "mathbot"])
    decided = await stub.Decide(router_pb2.DecideRequest(query=prompts["math"][4], options=both))
    assert set(decided.probabilities) == {"mathbot"}
    served = await stub.Route(router_pb2.RouteRequest(query=prompts["math"][4], options=both))
    assert served.expert == served.chosen_expert == "mathbot" and not served.fallback

    common = dict(kafka_bootstrap=stack.kafka_bootstrap, redis_url=stack.redis_url, topic_prefix=prefix)
    workers = await WorkerApp(WorkerSettings(**common, experts="silent"), router.catalog).start()
    try:
        await asyncio.sleep(1.0)
        assert await circuit("silent") == "half_open"
        probe = await stub.Route(router_pb2.RouteRequest(query=prompts["math"][5], timeout_ms=20_000, options=only_silent))
        assert probe.expert == "silent" and await circuit("silent") == "closed"
    finally:
        await bounded(workers.stop(), 60, "stopping the silent expert's worker")


async def test_only_expert_failing_is_unavailable_with_the_decision_id(routed, prompts):
    _, stub, _ = routed
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Route(route(prompts["math"][0], allowed_experts=["flaky"]))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "flaky" in err.value.details() and "decision_id=" in err.value.details()
    assert dict(err.value.trailing_metadata())["decision-id"]


async def test_decide_list_health_reflection(routed):
    router, stub, channel = routed
    d = await stub.Decide(router_pb2.DecideRequest(query="Capital of Peru?"))
    assert set(d.probabilities) == {"mathbot", "triviabot", "flaky", "silent"}
    assert sum(d.probabilities.values()) == pytest.approx(1.0) and d.expert in d.probabilities
    experts = await stub.ListExperts(router_pb2.ListExpertsRequest())
    assert [e.name for e in experts.experts] == ["mathbot", "triviabot", "flaky", "silent"]
    assert experts.experts[0].premium and experts.policy_name == "grouped_ts"
    health = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service="bandit_router.v1.Router"))
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(channel)
    async for reply in refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])):
        names = {s.name for s in reply.list_services_response.service}
        assert {"bandit_router.v1.Router", "grpc.health.v1.Health"} <= names
        break


async def test_malformed_expert_request_is_dead_lettered_and_the_pool_lives_on(routed, stack, prompts):
    router, stub, _ = routed
    producer = make_producer(stack.kafka_bootstrap)
    await producer.start()
    await producer.send_and_wait(router.s.expert_topic("mathbot"), b"\xff\xfe not protobuf")
    bad_id = events_pb2.ExpertRequest(decision_id="nope", expert="mathbot", query="q").SerializeToString()
    await producer.send_and_wait(router.s.expert_topic("mathbot"), bad_id)
    await producer.stop()
    letters = await read_topic(stack.kafka_bootstrap, router.s.dead_letter_topic, lambda ms: len(ms) >= 2,
                               decode=lambda v: decode(v, events_pb2.DeadLetter))
    reasons = sorted(m.reason for m in letters)
    assert any("undecodable ExpertRequest" in r or "is not a UUID" in r for r in reasons)
    assert any("'nope' is not a UUID" in r for r in reasons)
    assert all(m.source_topic == router.s.expert_topic("mathbot") for m in letters)
    resp = await stub.Route(route(prompts["math"][1], allowed_experts=["mathbot"]))
    assert resp.expert == "mathbot"


@pytest.mark.parametrize("options, eligible", [
    ({"max_cost": 0.005}, {"triviabot", "flaky", "silent"}),       # mathbot costs 0.01 a call
    ({"max_latency_s": 1.0}, {"triviabot", "flaky", "silent"}),    # mathbot takes 2 s; unknown latency passes
    ({"max_cost": 0.05, "max_latency_s": 3.0}, {"mathbot", "triviabot", "flaky", "silent"}),
])
async def test_cost_and_latency_filters_limit_the_eligible_experts(routed, options, eligible):
    _, stub, _ = routed
    d = await stub.Decide(router_pb2.DecideRequest(query="Capital of Peru?",
                                                   options=router_pb2.RouteOptions(**options)))
    assert set(d.probabilities) == eligible and d.expert in eligible
