"""API keys on both doors: who may call, act for which tenant, rate which decision.
A router with auth on (keys file in the test's folder, reloaded live), real worker pools
and the feedback app over the session's Kafka and Redis."""
from __future__ import annotations

import contextlib
import io
import json
import uuid

import aiohttp
import grpc
import openai
import pytest

from common.codec import decode
from common.experts import ExpertCatalog
from common.kafka import make_producer
from common.settings import FeedbackSettings, RouterSettings, WorkerSettings
from feedback.app import FeedbackApp
from proto import events_pb2, router_pb2, router_pb2_grpc
from router_svc import auth
from router_svc.app import RouterApp
from router_svc.metrics import KEY_RELOADS
from stack.experts_file import write_catalog
from tests.helpers import bounded, eventually, read_topic
from workers.main import WorkerApp


def mint(path, tenant: str, admin: bool = False) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        auth.main(["add", "--tenant", tenant, "--file", str(path), *(["--admin"] if admin else [])])
    return out.getvalue().strip()


@pytest.fixture
async def guarded(stack, prefix, embedder, two_kind_data, tmp_path):
    keys_file = tmp_path / "keys.toml"
    keys = {"acme": mint(keys_file, "acme"), "globex": mint(keys_file, "globex"), "ops": mint(keys_file, "ops", True)}
    assert all(k not in keys_file.read_text() for k in keys.values())           # hashes only
    replay = {"backend": "replay", "options": {"data": str(two_kind_data)}}
    catalog = ExpertCatalog.from_file(write_catalog(tmp_path / "experts.toml", {
        "mathbot": {**replay, "premium": True}, "triviabot": replay}))
    common = dict(kafka_bootstrap=stack.kafka_bootstrap, redis_url=stack.redis_url, topic_prefix=prefix)
    workers = await WorkerApp(WorkerSettings(**common), catalog).start()
    learner = await FeedbackApp(FeedbackSettings(**common, app_id=f"{prefix}feedback", unknown_grace_s=2,
                                                 learner_flush_s=0.2, sweep_interval_s=1)).start()
    router = await RouterApp(RouterSettings(**common, port=0, http_port=0, auth=True, keys_file=keys_file,
                                            catalog_poll_s=0.2, default_timeout_ms=8000), catalog,
                             embedder=embedder).start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{router.port}")
    yield router, router_pb2_grpc.RouterStub(channel), keys, keys_file
    await bounded(channel.close(), 30, "closing the channel")
    await bounded(router.stop(grace=1), 60, "stopping the router")
    await bounded(learner.stop(), 60, "stopping the feedback app")
    await bounded(workers.stop(), 60, "stopping the workers")


def bearer(key: str) -> tuple:
    return (("authorization", f"Bearer {key}"),)


async def test_grpc_calls_need_a_known_key_and_act_for_its_tenant(guarded, stack, prompts):
    router, stub, keys, _ = guarded
    request = router_pb2.RouteRequest(query=prompts["math"][0])
    for metadata, message in ((None, "an API key is required"), (bearer("br-wrong"), "unknown API key"),
                              ((("authorization", "Basic abc"),), "must be 'Bearer <key>'")):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Route(request, metadata=metadata)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED and message in err.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ListExperts(router_pb2.ListExpertsRequest())
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Route(router_pb2.RouteRequest(query=prompts["math"][0], options=router_pb2.RouteOptions(
            tenant="globex")), metadata=bearer(keys["acme"]))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED and "may not act for tenant 'globex'" in \
        err.value.details()
    mine = await stub.Route(request, metadata=bearer(keys["acme"]))
    theirs = await stub.Decide(router_pb2.DecideRequest(query="hi", options=router_pb2.RouteOptions(
        tenant="globex")), metadata=bearer(keys["ops"]))                  # an admin acts for anyone
    decisions = await read_topic(stack.kafka_bootstrap, router.s.decisions_topic,
                                 lambda ms: {mine.decision_id, theirs.decision_id} <= {m.decision_id for m in ms},
                                 decode=lambda v: decode(v, events_pb2.DecisionEvent))
    tenant = {m.decision_id: m.tenant for m in decisions}
    assert tenant[mine.decision_id] == "acme" and tenant[theirs.decision_id] == "globex"


async def test_a_tenant_rates_only_its_own_decisions(guarded, stack, prompts):
    router, stub, keys, _ = guarded
    before = router.core.expert_updates()
    routed = await stub.Route(router_pb2.RouteRequest(query=prompts["trivia"][0]), metadata=bearer(keys["acme"]))
    with pytest.raises(grpc.aio.AioRpcError) as err:                 # refused at once: the owner is on record
        await stub.Feedback(router_pb2.FeedbackRequest(decision_id=routed.decision_id, quality=0.0),
                            metadata=bearer(keys["globex"]))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED and "may not rate it" in err.value.details()
    # A stranger's rating that reaches Kafka some other way is refused by the join.
    producer = make_producer(stack.kafka_bootstrap)
    await producer.start()
    await producer.send_and_wait(router.s.ratings_topic, json.dumps({
        "ratingId": str(uuid.uuid4()), "decisionId": routed.decision_id, "quality": 0.0,
        "tenant": "globex"}).encode(), key=routed.decision_id.encode())
    await producer.stop()
    await stub.Feedback(router_pb2.FeedbackRequest(decision_id=routed.decision_id, quality=1.0),
                        metadata=bearer(keys["acme"]))
    letters = await read_topic(stack.kafka_bootstrap, router.s.dead_letter_topic,
                               lambda ms: any(m.decision_id == routed.decision_id for m in ms), timeout=60,
                               decode=lambda v: decode(v, events_pb2.DeadLetter))
    assert next(m for m in letters if m.decision_id == routed.decision_id).reason == \
        "tenant 'globex' may not rate a decision of tenant 'acme'"
    rewards = await read_topic(stack.kafka_bootstrap, router.s.rewards_topic,
                               lambda ms: any(m.decision_id == routed.decision_id for m in ms), timeout=60,
                               decode=lambda v: decode(v, events_pb2.RewardEvent))
    assert next(m for m in rewards if m.decision_id == routed.decision_id).quality == 1.0
    await eventually(lambda: sum(router.core.expert_updates().values()) > sum(before.values()), timeout=60)


async def test_http_door_refuses_without_a_key_and_serves_the_dashboard_to_admins(guarded, prompts):
    router, _, keys, _ = guarded
    base = f"http://127.0.0.1:{router.http_port}"
    body = {"model": "bandit-router", "messages": [{"role": "user", "content": prompts["math"][1]}]}
    async with aiohttp.ClientSession() as session:
        for headers, status in (({}, 401), ({"authorization": "Bearer br-wrong"}, 401)):
            async with session.post(f"{base}/v1/chat/completions", json=body, headers=headers) as resp:
                assert resp.status == status and resp.headers["www-authenticate"] == "Bearer"
                assert (await resp.json())["error"]["message"]
        for key, status in ((keys["acme"], 403), (keys["ops"], 200)):
            async with session.get(f"{base}/dashboard/data", headers={"authorization": f"Bearer {key}"}) as resp:
                assert resp.status == status
        async with session.get(f"{base}/healthz") as resp:
            assert resp.status == 200                                   # probes need no key
    anonymous = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key="br-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        await anonymous.models.list()
    await anonymous.close()
    client = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=keys["acme"], max_retries=0)
    with pytest.raises(openai.PermissionDeniedError, match="may not act for tenant 'globex'"):
        await client.chat.completions.create(**body, extra_body={"tenant": "globex"})
    chat = await client.chat.completions.create(**body)
    assert chat.choices[0].message.content
    await client.close()


async def test_keys_are_added_and_revoked_live(guarded, prompts):
    router, stub, keys, keys_file = guarded
    newcomer = mint(keys_file, "initech")
    await eventually(lambda: router.core.auth.ring.who(newcomer), timeout=10)
    await stub.Decide(router_pb2.DecideRequest(query="hi"), metadata=bearer(newcomer))
    keys_file.write_text(keys_file.read_text().replace(f'"{auth.hash_key(keys["globex"])}"', ""))   # revoke globex
    await eventually(lambda: router.core.auth.ring.who(keys["globex"]) is None, timeout=10)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Decide(router_pb2.DecideRequest(query="hi"), metadata=bearer(keys["globex"]))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    rejected = KEY_RELOADS.labels("rejected")._value.get()
    keys_file.write_text("this is [not toml")                        # a broken file keeps the last good ring
    await eventually(lambda: KEY_RELOADS.labels("rejected")._value.get() > rejected, timeout=10)
    await stub.Decide(router_pb2.DecideRequest(query="hi"), metadata=bearer(newcomer))
