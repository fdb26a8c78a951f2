"""The OpenAI-compatible HTTP door, driven by the official `openai` client against the
real stack: router (gRPC and HTTP over one core), worker pools and the feedback app in
this process, the session's real Kafka and Redis."""
from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid

import aiohttp
import grpc
import openai
import pytest

from aiohttp import web

from common.experts import ExpertCatalog
from proto import router_pb2, router_pb2_grpc
from common.settings import FeedbackSettings, RouterSettings, WorkerSettings
from feedback.app import FeedbackApp
from router_svc.app import RouterApp
from simulations.media_render import shapes_image
from stack.experts_file import write_catalog
from tests.helpers import bounded, eventually, serve
from workers.main import WorkerApp


TOKENS, GAP_S = [f"word{i} " for i in range(12)], 0.1


@pytest.fixture
async def writer():
    """A stand-in for a paid OpenAI-compatible model that streams: one token every GAP_S,
    or a failure after two tokens when asked to "break midway". Records when each stream began
    and finished writing."""
    streams = []

    async def completions(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        broken = "break midway" in body["messages"][-1]["content"]
        if not body.get("stream"):
            return web.json_response({"id": "w", "object": "chat.completion", "created": 0, "model": body["model"],
                                      "choices": [{"index": 0, "finish_reason": "stop",
                                                   "message": {"role": "assistant", "content": "".join(TOKENS)}}]})
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        times = {"began": time.monotonic()}
        streams.append(times)
        base = {"id": "w", "object": "chat.completion.chunk", "created": 0, "model": body["model"]}
        for i, token in enumerate(TOKENS):
            if broken and i == 2:
                await resp.write(b'data: {"error": {"message": "overloaded mid-stream"}}\n\n')
                return resp
            await asyncio.sleep(GAP_S)
            await resp.write(b"data: " + json.dumps({**base, "choices": [
                {"index": 0, "delta": {"content": token}, "finish_reason": None}]}).encode() + b"\n\n")
        await resp.write(b"data: " + json.dumps({**base, "choices": [], "usage": {
            "prompt_tokens": 7, "completion_tokens": len(TOKENS), "total_tokens": 7 + len(TOKENS)}}).encode()
            + b"\n\ndata: [DONE]\n\n")
        times["finished"] = time.monotonic()
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    async with serve(app) as url:
        yield f"{url}/v1", streams


@pytest.fixture
async def door(stack, prefix, embedder, two_kind_data, tmp_path, writer):
    replay = {"backend": "replay", "options": {"data": str(two_kind_data)}}
    catalog = ExpertCatalog.from_file(write_catalog(tmp_path / "experts.toml", {
        "writer": {"backend": "openai", "price_per_call": 0.0001,
                   "options": {"base_url": writer[0], "model": "stand-in", "max_retries": 0}},
        "mathbot": {**replay, "premium": True, "price_per_call": 0.01},
        "triviabot": {**replay, "price_per_call": 0.001},
        "shapes": {"backend": "vision_pipeline", "modalities": ["image"], "options": {"stages": ["shapes"]}},
        "silent": {"backend": "replay", "options": {**replay["options"], "outcomes_of": "mathbot"}},
        "flaky": {"backend": "replay", "options": {**replay["options"], "outcomes_of": "mathbot", "fail_rate": 1.0}}}))
    common = dict(kafka_bootstrap=stack.kafka_bootstrap, redis_url=stack.redis_url, topic_prefix=prefix)
    workers = await WorkerApp(WorkerSettings(**common, experts="mathbot,triviabot,shapes,writer,flaky"), catalog).start()
    learner = await FeedbackApp(FeedbackSettings(**common, app_id=f"{prefix}feedback", unknown_grace_s=2,
                                                 learner_flush_s=0.2, sweep_interval_s=1)).start()
    router = await RouterApp(RouterSettings(**common, port=0, http_port=0, seed=4, default_timeout_ms=4000,
                                            snapshot_poll_s=0.2), catalog, embedder=embedder).start()
    base = f"http://127.0.0.1:{router.http_port}"
    client = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=30)
    yield router, client, base
    await client.close()
    await bounded(router.stop(grace=1), 60, "stopping the router")
    await bounded(learner.stop(), 60, "stopping the feedback app")
    await bounded(workers.stop(), 60, "stopping the workers")


async def post(url: str, body) -> tuple[int, dict]:
    """A plain HTTP client (the router serves in this test's event loop: no blocking calls)."""
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json=body, timeout=aiohttp.ClientTimeout(total=30)) as resp:
            return resp.status, await resp.json()


async def test_a_chat_completion_is_routed_and_answered(door, prompts):
    router, client, _ = door
    raw = await client.chat.completions.with_raw_response.create(
        model="bandit-router", messages=[{"role": "user", "content": prompts["math"][0]}],
        extra_body={"tenant": "acme", "hints": {"app": "tutor"}, "allowed_experts": ["mathbot", "triviabot"]})
    chat = raw.parse()
    assert uuid.UUID(chat.id) and raw.headers["x-decision-id"] == chat.id
    assert chat.model == raw.headers["x-routed-expert"] in ("mathbot", "triviabot")
    assert chat.choices[0].message.content.startswith(f"[{chat.model}]")
    assert chat.usage.total_tokens == chat.usage.prompt_tokens + chat.usage.completion_tokens > 0
    assert chat.model_extra["cost"] == pytest.approx(0.001) and chat.model_extra["bandit_router"]["decision_id"] == chat.id
    # An expert's name bypasses routing; `bandit-router:<w>` sets the cost weight.
    direct = await client.chat.completions.create(model="triviabot",
                                                  messages=[{"role": "user", "content": prompts["trivia"][1]}])
    assert direct.model == "triviabot"
    models = await client.models.list()
    assert [m.id for m in models.data] == ["bandit-router", "writer", "mathbot", "triviabot", "shapes", "silent",
                                           "flaky"]


async def test_a_streamed_completion_arrives_in_openai_chunks(door, prompts):
    _, client, _ = door
    stream = await client.chat.completions.create(model="bandit-router:0.5", stream=True,
                                                  messages=[{"role": "user", "content": prompts["trivia"][0]}],
                                                  extra_body={"allowed_experts": ["mathbot", "triviabot"]})
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].choices[0].finish_reason == "stop" and text.startswith(f"[{chunks[0].model}]")
    assert len({c.id for c in chunks}) == 1


async def time_to_first_token(stream, asked: float) -> tuple[float, str, list]:
    """(seconds from `asked` to the first content, the whole text, the chunks) of an OpenAI chunk stream."""
    first, chunks = None, []
    async for c in stream:
        chunks.append(c)
        if first is None and c.choices and c.choices[0].delta.content:
            first = time.monotonic() - asked
    return first, "".join(c.choices[0].delta.content or "" for c in chunks if c.choices), chunks


async def test_a_streaming_expert_streams_through_the_door(door, writer):
    """Tokens flow as the expert writes them: the first reaches the caller before the expert
    has finished, and time to first token is close to the expert's own."""
    _, client, _ = door
    base_url, streams = writer
    direct = openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0)
    asked = time.monotonic()
    own_ttft, own_text, _ = await time_to_first_token(await direct.chat.completions.create(
        model="stand-in", stream=True, messages=[{"role": "user", "content": "hello"}]), asked)
    await direct.close()
    asked = time.monotonic()
    raw = await client.chat.completions.with_raw_response.create(
        model="writer", stream=True, messages=[{"role": "user", "content": "hello"}])
    ttft, text, chunks = await time_to_first_token(raw.parse(), asked)
    first_at = asked + ttft
    assert text == own_text == "".join(TOKENS)
    assert raw.headers["x-routed-expert"] == "writer" and raw.headers["x-decision-id"] == chunks[0].id
    assert first_at < streams[-1]["finished"], "the first token waited for the whole answer"
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 2
    assert chunks[-1].usage.completion_tokens == len(TOKENS) and chunks[-1].model_extra["cost"] == pytest.approx(1e-4)
    print(f"\ntime to first token: through the router {ttft * 1000:.0f} ms, the expert's own "
          f"{own_ttft * 1000:.0f} ms; whole answer {(streams[-1]['finished'] - streams[-1]['began']) * 1000:.0f} ms")


async def test_an_expert_failing_mid_stream_ends_the_stream_with_an_error(door):
    """Once the caller has part of an answer there is no fallback: the stream ends with an
    error event, which the openai client raises."""
    _, client, _ = door
    stream = await client.chat.completions.create(
        model="bandit-router:1000", stream=True, messages=[{"role": "user", "content": "please break midway"}],
        extra_body={"allowed_experts": ["writer", "mathbot"]})
    got = []
    with pytest.raises(openai.APIError, match="after its answer began streaming"):
        async for c in stream:
            got.append(c)
    assert got[0].model == "writer" and "".join(c.choices[0].delta.content or "" for c in got) == "".join(TOKENS[:2])


async def test_route_stream_over_grpc_streams_the_same_pieces(door):
    router, _, _ = door
    writer_only = router_pb2.RouteOptions(allowed_experts=["writer"])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{router.port}") as channel:
        stub = router_pb2_grpc.RouterStub(channel)
        chunks = [c async for c in stub.RouteStream(router_pb2.RouteRequest(query="hello", options=writer_only))]
        texts = [c.text for c in chunks if not c.HasField("done")]
        assert len(texts) > 2 and "".join(texts) == "".join(TOKENS)
        assert chunks[-1].done.answer == "".join(TOKENS) and chunks[-1].done.expert == "writer"
        assert {c.decision_id for c in chunks} == {chunks[-1].done.decision_id}
        got = []
        with pytest.raises(grpc.aio.AioRpcError) as err:       # after two pieces: the call's status
            async for c in stub.RouteStream(router_pb2.RouteRequest(query="please break midway", options=writer_only)):
                got.append(c.text)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE and "began streaming" in err.value.details()
        assert "".join(got) == "".join(TOKENS[:2])
        with pytest.raises(grpc.aio.AioRpcError) as err:       # before any piece: as for Route
            async for c in stub.RouteStream(router_pb2.RouteRequest(query="", options=writer_only)):
                pass
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_an_image_part_reaches_the_vision_expert(door):
    _, client, _ = door
    png = shapes_image([("circle", "red", (80, 80, 40)), ("circle", "blue", (220, 200, 50))])
    chat = await client.chat.completions.create(model="bandit-router", messages=[{"role": "user", "content": [
        {"type": "text", "text": "How many circles are there?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(png).decode()}}]}])
    assert chat.model == "shapes" and chat.choices[0].message.content == "2"


async def test_feedback_by_decision_id_is_learned(door, prompts):
    router, client, base = door
    before = router.core.expert_updates()
    ids = []
    for p in prompts["math"][:3]:
        chat = await client.chat.completions.create(model="mathbot", messages=[{"role": "user", "content": p}])
        status, body = await post(f"{base}/v1/feedback", {"decision_id": chat.id, "quality": 1.0, "source": "app"})
        assert status == 200 and body["decision_id"] == chat.id and uuid.UUID(body["rating_id"])
        ids.append(chat.id)
    await eventually(lambda: router.core.expert_updates().get("mathbot", 0) >= before.get("mathbot", 0) + 3,
                     timeout=60)


@pytest.mark.parametrize("body, status, message", [
    ({"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]}, 404, "The model 'gpt-9' does not exist"),
    ({"messages": [{"role": "user", "content": "hi"}]}, 400, "model is required"),
    ({"model": "bandit-router:cheap", "messages": [{"role": "user", "content": "hi"}]}, 400,
     "the cost weight after ':' must be a number"),
    ({"model": "bandit-router", "messages": []}, 400, "messages must be a non-empty list"),
    ({"model": "bandit-router", "messages": [{"role": "user", "content": "hi"}], "cost_weight": -1}, 400,
     "options.cost_weight must be a finite number >= 0"),
    ({"model": "bandit-router", "messages": [{"role": "user", "content": "hi"}], "hints": {"k": 3}}, 400,
     "hints must map names to strings"),
    ({"model": "bandit-router", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]}, 400,
     "image_url must be a data: URI"),
    ({"model": "bandit-router", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,aGVsbG8="}}]}]}, 400,
     "declared image/png but the bytes are of no known media type"),
    ({"model": "bandit-router", "messages": [{"role": "user", "content": "hi"}], "allowed_experts": ["silent"]},
     504, "no fallback expert is eligible"),
    ({"model": "flaky", "messages": [{"role": "user", "content": "hi"}]}, 503,
     "expert 'flaky' failed"),
], ids=["unknown-model", "no-model", "bad-weight", "no-messages", "negative-weight", "bad-hints", "remote-image",
        "not-an-image", "deadline", "expert-down"])
async def test_errors_are_openai_shaped_with_the_right_status(door, body, status, message):
    _, _, base = door
    got, err = await post(f"{base}/v1/chat/completions", body)
    assert got == status and message in err["error"]["message"], err
    assert set(err["error"]) == {"message", "type", "param", "code"}


async def test_the_openai_client_raises_its_own_errors(door):
    _, client, base = door
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="quality must be in"):
        await client.post("/feedback", body={"decision_id": str(uuid.uuid4()), "quality": 3}, cast_to=object)
    status, err = await post(f"{base}/v1/feedback", {"decision_id": "nope", "quality": 0.5})
    assert status == 400 and "is not a UUID" in err["error"]["message"]


async def get(url: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=30)) as resp:
            return resp.status, resp.headers.get("content-type", ""), await resp.text()


async def test_the_dashboard_serves_its_page_assets_and_live_data(door, prompts):
    router, client, base = door
    chats = await asyncio.gather(*(client.chat.completions.create(
        model="mathbot", messages=[{"role": "user", "content": p}]) for p in prompts["math"][:8]))
    chat = chats[0]
    status, _ = await post(f"{base}/v1/feedback", {"decision_id": chat.id, "quality": 0.75})
    assert status == 200
    status, kind, page = await get(f"{base}/dashboard/")
    assert status == 200 and kind.startswith("text/html") and "static/vendor/uPlot.iife.min.js" in page
    for asset in ("vendor/uPlot.iife.min.js", "vendor/uPlot.min.css", "dashboard.js", "dashboard.css"):
        status, _, text = await get(f"{base}/dashboard/static/{asset}")
        assert status == 200 and len(text) > 500, asset

    seen: dict = {}

    async def learned():
        _, _, text = await get(f"{base}/dashboard/data")
        data = json.loads(text)
        rows = {r["decision_id"]: r for r in data["recent"]}
        row = rows.get(chat.id)
        missing = {c.id for c in chats} - set(rows)          # whichever partition each decision went to
        seen.update(missing=missing, row=row, totals=data["totals"],
                    feed=sorted(str(tp) for tp in router.feed._consumer.assignment()))
        return data if not missing and row and row["quality"] == 0.75 and row["answered_by"] == "mathbot" else None

    try:
        data = await eventually(learned, timeout=120)
    except AssertionError:
        raise AssertionError(f"the dashboard never showed all the decisions and the rating: {seen}") from None
    assert data["premium"] == "mathbot" and data["totals"]["rewards"] >= 1 and data["share"]["mathbot"]
    assert data["policy"] == router.live.name


async def test_two_routers_on_one_machine_share_both_ports(door, stack, prefix):
    """Both doors bind with SO_REUSEPORT: a second router started on the first one's gRPC and
    HTTP ports starts, and new connections to the HTTP port reach both."""
    from bandit.embedder import Embedder

    router, _, base = door
    second = await RouterApp(RouterSettings(kafka_bootstrap=stack.kafka_bootstrap, redis_url=stack.redis_url,
                                            topic_prefix=prefix, port=router.port, http_port=router.http_port),
                             router.catalog, embedder=Embedder()).start()
    try:
        assert (second.port, second.http_port) == (router.port, router.http_port)
        answered = set()
        for _ in range(40):
            async with aiohttp.ClientSession() as session:      # a new connection each time
                async with session.get(f"{base}/healthz") as resp:
                    answered.add((await resp.json())["router"])
        assert answered == {router.s.router_id, second.s.router_id}
    finally:
        await bounded(second.stop(grace=1), 60, "stopping the second router")


async def test_a_replica_at_capacity_sheds_with_429_and_retry_after(door, prompts):
    """Beyond max_in_flight a request is refused at once (RESOURCE_EXHAUSTED / 429 with
    Retry-After), not queued past its deadline; the request holding the slot is unaffected."""
    router, client, base = door
    router.core.max_in_flight = 1
    try:
        held = asyncio.create_task(post(f"{base}/v1/chat/completions", {    # nobody serves "silent": 4 s
            "model": "silent", "messages": [{"role": "user", "content": prompts["math"][0]}]}))
        await eventually(lambda: router.core.in_flight == 1, timeout=10, interval=0.02)
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{base}/v1/chat/completions", json={
                    "model": "bandit-router", "messages": [{"role": "user", "content": prompts["math"][1]}]}) as resp:
                assert resp.status == 429 and resp.headers["retry-after"] == "1"
                assert "router at capacity" in (await resp.json())["error"]["message"]
        with pytest.raises(openai.RateLimitError):
            await client.chat.completions.create(model="mathbot", messages=[{"role": "user", "content": "hi"}])
        status, _ = await held
        assert status == 504
    finally:
        router.core.max_in_flight = router.core.s.max_in_flight
    chat = await client.chat.completions.create(model="mathbot", messages=[{"role": "user", "content": prompts["math"][2]}])
    assert chat.model == "mathbot"
