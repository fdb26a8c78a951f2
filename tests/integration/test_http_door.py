"""The OpenAI-compatible HTTP door, driven by the official `openai` client against the
real stack: router (gRPC and HTTP over one core), worker pools and the feedback app in
this process, the session's real Kafka and Redis."""
from __future__ import annotations

import base64
import uuid

import aiohttp
import openai
import pytest

from common.experts import ExpertCatalog
from common.settings import FeedbackSettings, RouterSettings, WorkerSettings
from feedback.app import FeedbackApp
from router_svc.app import RouterApp
from simulations.media_render import shapes_image
from stack.experts_file import write_catalog
from tests.helpers import bounded, eventually
from workers.main import WorkerApp


@pytest.fixture
async def door(stack, prefix, embedder, two_kind_data, tmp_path):
    replay = {"backend": "replay", "options": {"data": str(two_kind_data)}}
    catalog = ExpertCatalog.from_file(write_catalog(tmp_path / "experts.toml", {
        "mathbot": {**replay, "premium": True, "price_per_call": 0.01},
        "triviabot": {**replay, "price_per_call": 0.001},
        "shapes": {"backend": "vision_pipeline", "modalities": ["image"], "options": {"stages": ["shapes"]}},
        "silent": {"backend": "replay", "options": {**replay["options"], "outcomes_of": "mathbot"}}}))
    common = dict(kafka_bootstrap=stack.kafka_bootstrap, redis_url=stack.redis_url, topic_prefix=prefix)
    workers = await WorkerApp(WorkerSettings(**common, experts="mathbot,triviabot,shapes"), catalog).start()
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
    assert [m.id for m in models.data] == ["bandit-router", "mathbot", "triviabot", "shapes", "silent"]


async def test_a_streamed_completion_arrives_in_openai_chunks(door, prompts):
    _, client, _ = door
    stream = await client.chat.completions.create(model="bandit-router:0.5", stream=True,
                                                  messages=[{"role": "user", "content": prompts["trivia"][0]}],
                                                  extra_body={"allowed_experts": ["mathbot", "triviabot"]})
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].choices[0].finish_reason == "stop" and text.startswith(f"[{chunks[0].model}]")
    assert len({c.id for c in chunks}) == 1


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
], ids=["unknown-model", "no-model", "bad-weight", "no-messages", "negative-weight", "bad-hints", "remote-image",
        "not-an-image", "deadline"])
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
