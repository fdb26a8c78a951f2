"""The `openai` backend against a stand-in OpenAI-compatible server (a paid API's stand-in),
driven through real worker pools, the real broker and the real Redis (answer ledger)."""
from __future__ import annotations

import base64
import uuid

import pytest
from aiohttp import web

from common.claims import PartStore
from common.codec import decode
from common.experts import ExpertCatalog
from common.kafka import ensure_topics, make_producer, now_ms
from common.media import Part
from common.redis_client import connect
from common.settings import WorkerSettings
from proto import events_pb2
from simulations.media_render import pdf, shapes_image
from stack.experts_file import write_catalog
from tests.helpers import eventually, read_topic, serve
from workers import metrics
from workers.main import WorkerApp


async def ask(stack, settings: WorkerSettings, requests) -> dict[str, events_pb2.ExpertResult]:
    """Send (expert, query, part refs) requests as the router would; the workers' replies,
    by decision id, in the order asked."""
    producer = make_producer(stack.kafka_bootstrap)
    await producer.start()
    ids = []
    for expert, query, parts in requests:
        did = str(uuid.uuid4())
        ids.append(did)
        req = events_pb2.ExpertRequest(request_id=f"{did}:0", decision_id=did, expert=expert, query=query,
                                       deadline_ms=now_ms() + 30_000, reply_topic=settings.reply_topic("test"),
                                       parts=parts)
        await producer.send_and_wait(settings.expert_topic(expert), req.SerializeToString(), key=did.encode())
    await producer.stop()
    replies = await read_topic(stack.kafka_bootstrap, settings.reply_topic("test"),
                               lambda ms: {m.decision_id for m in ms} >= set(ids),
                               decode=lambda v: decode(v, events_pb2.ExpertResult))
    by_id = {r.decision_id: r for r in replies}
    return {did: by_id[did] for did in ids}


@pytest.fixture
async def chat_server():
    seen, texts = [], []

    async def completions(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append(body)
        content = body["messages"][-1]["content"]
        text = content if isinstance(content, str) else " ".join(c["text"] for c in content if c["type"] == "text")
        if "explode" in text:
            return web.json_response({"error": {"message": "model overloaded"}}, status=400)
        if "busy" in text and sum(text == t for t in texts) < 2:      # the first two calls: a 503
            texts.append(text)
            return web.json_response({"error": {"message": "try later"}}, status=503)
        return web.json_response({
            "id": "c1", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": f"echo: {text}"}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    async with serve(app) as url:
        yield f"{url}/v1", seen


async def test_openai_backend_answers_prices_and_reports_errors(stack, prefix, chat_server, tmp_path):
    base_url, seen = chat_server
    catalog = ExpertCatalog.from_file(write_catalog(tmp_path / "experts.toml", {"llm": {
        "backend": "openai", "price_per_call": 0.5, "price_per_input_token": 0.01, "price_per_output_token": 0.1,
        "options": {"base_url": base_url, "model": "stand-in-7b", "max_retries": 0, "system_prompt": "Be brief."}}}))
    settings = WorkerSettings(kafka_bootstrap=stack.kafka_bootstrap, redis_url=stack.redis_url, topic_prefix=prefix)
    await ensure_topics(stack.kafka_bootstrap, {settings.reply_topic("test"): 1})
    workers = await WorkerApp(settings, catalog).start()
    try:
        retried = metrics.RETRIES.labels("llm")._value.get()
        ok, bad, busy = (await ask(stack, settings, [("llm", "hello there", []), ("llm", "please explode", []),
                                                     ("llm", "busy now?", [])])).values()
    finally:
        await workers.stop()
    assert ok.ok and ok.answer == "echo: hello there" and (ok.input_tokens, ok.output_tokens) == (100, 20)
    assert ok.cost == pytest.approx(0.5 + 100 * 0.01 + 20 * 0.1) and ok.latency_s > 0
    assert not bad.ok and "model overloaded" in bad.error
    assert sum("explode" in str(b["messages"]) for b in seen) == 1          # a 400 is not tried again
    assert busy.ok and busy.answer == "echo: busy now?"                      # two 503s, then an answer
    assert metrics.RETRIES.labels("llm")._value.get() - retried == 2
    assert seen[0]["model"] == "stand-in-7b" and seen[0]["messages"][0] == {"role": "system", "content": "Be brief."}


async def test_parts_reach_a_vision_model_and_the_document_expert(stack, prefix, chat_server, tmp_path):
    """Image parts go to an OpenAI-style vision model as data URIs; the document expert hands
    the PDF's text to its stage-2 text model. Both read the parts from the claim check."""
    base_url, seen = chat_server
    llm = {"backend": "openai", "options": {"base_url": base_url, "model": "stand-in-vision", "max_retries": 0}}
    catalog = ExpertCatalog.from_file(write_catalog(tmp_path / "experts.toml", {
        "vlm": {**llm, "modalities": ["text", "image"]},
        "docs": {"backend": "document", "modalities": ["document"], "price_per_call": 0.01,
                 "options": {"stage2": llm}},
        "looker": {"backend": "vision_pipeline", "modalities": ["image"], "options": {"stages": ["shapes"],
                                                                                      "stage2": llm}}}))
    settings = WorkerSettings(kafka_bootstrap=stack.kafka_bootstrap, redis_url=stack.redis_url, topic_prefix=prefix)
    await ensure_topics(stack.kafka_bootstrap, {settings.reply_topic("test"): 1})
    redis = connect(stack.redis_url)
    store = PartStore(redis, settings.redis_prefix)
    picture = Part("image/png", shapes_image([("circle", "red", (60, 60, 40))]), "dot.png")
    report = Part("application/pdf", pdf(["Revenue grew 12% in the third quarter."]), "q3.pdf")
    refs = {"vlm": await store.put(picture), "docs": await store.put(report), "looker": await store.put(picture)}
    workers = await WorkerApp(settings, catalog).start()
    try:
        asked = [("vlm", "What is in the picture?"), ("docs", "How much did revenue grow?"),
                 ("looker", "Is this a warning sign?")]
        replies = await ask(stack, settings, [(e, q, [refs[e]]) for e, q in asked])
    finally:
        await workers.stop()
        await redis.aclose()
    by = dict(zip([e for e, _ in asked], replies.values()))
    assert by["vlm"].ok and by["docs"].ok, [r.error for r in replies.values()]
    assert "Revenue grew 12% in the third quarter." in by["docs"].answer
    assert by["docs"].cost == pytest.approx(0.01)
    # No rule answers that from shapes: stage 2 (the text model) gets the question and stage 1's findings.
    assert by["looker"].ok and by["looker"].answer.startswith("echo: Is this a warning sign?")
    assert "Shapes detected: red circle" in by["looker"].answer
    vision_call = next(b for b in seen if isinstance(b["messages"][-1]["content"], list))
    text, img = vision_call["messages"][-1]["content"]
    assert text == {"type": "text", "text": "What is in the picture?"}
    assert img["type"] == "image_url" and img["image_url"]["url"] == \
        "data:image/png;base64," + base64.b64encode(picture.data).decode()


def test_openai_backend_config_errors_name_the_option(tmp_path):
    from workers.backends import make_backend

    catalog = ExpertCatalog.from_file(write_catalog(tmp_path / "e.toml", {"llm": {
        "backend": "openai", "options": {"model": "m"}}, "odd": {"backend": "carrier-pigeon"}}))
    with pytest.raises(ValueError, match="openai backend needs options.base_url"):
        make_backend(catalog["llm"])
    with pytest.raises(ValueError, match="unknown backend 'carrier-pigeon'"):
        make_backend(catalog["odd"])


async def test_a_redelivered_request_never_calls_the_paid_expert_twice(stack, prefix, chat_server, tmp_path):
    """Kafka redelivers after a worker restart; the answer ledger in Redis re-sends the stored
    answer instead. With Redis unreachable the worker still answers (and counts the miss)."""
    base_url, seen = chat_server
    catalog = ExpertCatalog.from_file(write_catalog(tmp_path / "experts.toml", {"llm": {
        "backend": "openai", "price_per_call": 0.5, "options": {"base_url": base_url, "model": "m", "max_retries": 0}}}))
    settings = WorkerSettings(kafka_bootstrap=stack.kafka_bootstrap, redis_url=stack.redis_url, topic_prefix=prefix)
    replies_topic = settings.reply_topic("test")
    await ensure_topics(stack.kafka_bootstrap, {replies_topic: 1})
    producer = make_producer(stack.kafka_bootstrap)
    await producer.start()

    async def publish(req: events_pb2.ExpertRequest, times: int = 1) -> None:
        for _ in range(times):
            await producer.send_and_wait(settings.expert_topic("llm"), req.SerializeToString(),
                                         key=req.decision_id.encode())

    def request(query: str) -> events_pb2.ExpertRequest:
        did = str(uuid.uuid4())
        return events_pb2.ExpertRequest(request_id=f"{did}:0", decision_id=did, expert="llm", query=query,
                                        deadline_ms=now_ms() + 60_000, reply_topic=replies_topic)

    async def replies(until) -> list:
        return await read_topic(stack.kafka_bootstrap, replies_topic, until,
                                decode=lambda v: decode(v, events_pb2.ExpertResult))

    def count(counter) -> float:
        return counter._value.get()

    first = request("count me once")
    skipped, resent = count(metrics.DUPLICATES.labels("llm")), count(metrics.RESENT.labels("llm"))
    try:
        workers = await WorkerApp(settings, catalog).start()
        await publish(first, times=2)                        # a duplicate in the same process
        await eventually(lambda: count(metrics.DUPLICATES.labels("llm")) == skipped + 1)
        assert [r.answer for r in await replies(lambda ms: len(ms) >= 1)] == ["echo: count me once"]
        await workers.stop()
        # A new worker process (empty memory) sees the request again, as after a crash before commit.
        workers = await WorkerApp(settings.model_copy(update={"worker_id": "second"}), catalog).start()
        await publish(first)
        await eventually(lambda: count(metrics.RESENT.labels("llm")) == resent + 1)
        again = await replies(lambda ms: len(ms) >= 2)
        assert [r.answer for r in again] == ["echo: count me once"] * 2 and again[1].cost == again[0].cost
        await workers.stop()

        # Redis unreachable: the request is answered anyway, and the ledger error is counted.
        errors = count(metrics.LEDGER_ERRORS)
        dead_redis = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0", "worker_id": "third"})
        workers = await WorkerApp(dead_redis, catalog).start()
        await publish(request("redis is gone"))
        await replies(lambda ms: any(m.answer == "echo: redis is gone" for m in ms))
        assert count(metrics.LEDGER_ERRORS) > errors
    finally:
        await workers.stop()
        await producer.stop()
    assert [b["messages"][-1]["content"] for b in seen] == ["count me once", "redis is gone"]
