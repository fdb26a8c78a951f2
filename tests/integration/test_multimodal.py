"""Images over gRPC: checked parts, image features in the decision, the claim check through
real Redis to the two-stage vision pipeline (real Tesseract), and the fallback when a
worker finds its part gone."""
from __future__ import annotations

import hashlib
import io
import re

import grpc
import numpy as np
import pytest
import redis.asyncio as aioredis
from PIL import Image

from bandit.context import context_dim
from bandit.media_features import MEDIA_DIM, media_features
from common.codec import decode
from common.experts import ExpertCatalog
from common.media import MediaLimits, check_parts
from common.settings import RouterSettings, WorkerSettings
from proto import events_pb2, router_pb2, router_pb2_grpc
from router_svc.app import RouterApp
from simulations.media_render import png, shapes_image, text_image, tone
from stack.experts_file import write_catalog
from tests.helpers import bounded, read_topic
from workers.main import WorkerApp

RECEIPT = text_image(["CORNER CAFE", "Latte 4.50", "Bagel 3.25", "TOTAL 7.75"])
SHAPES = shapes_image([("circle", "red", (80, 80, 50)), ("circle", "blue", (250, 90, 45)),
                       ("square", "green", (150, 250, 55))])


def image(data: bytes, name: str = "", media_type: str = "image/png") -> router_pb2.ContentPart:
    return router_pb2.ContentPart(media_type=media_type, data=data, name=name)


@pytest.fixture
async def vision(stack, prefix, embedder, two_kind_data, tmp_path):
    """ocr and shapes: the two-stage pipeline with one stage-1 component each; premium: a
    stand-in for a premium vision model (the same pipeline with both components, priced
    as premium); textbot: text only. The ocr worker reads another Redis database, where
    no part is ever stored: to it every part is gone, as if expired."""
    catalog = ExpertCatalog.from_file(write_catalog(tmp_path / "experts.toml", {
        "ocr": {"backend": "vision_pipeline", "modalities": ["image"], "price_per_call": 0.001,
                "options": {"stages": ["ocr"]}},
        "shapes": {"backend": "vision_pipeline", "modalities": ["image"], "price_per_call": 0.001,
                   "options": {"stages": ["shapes"]}},
        "premium": {"backend": "vision_pipeline", "modalities": ["image", "text"], "premium": True,
                    "price_per_call": 0.05},
        "textbot": {"backend": "replay", "options": {"data": str(two_kind_data), "outcomes_of": "mathbot"},
                    "price_per_call": 0.001},
    }))
    common = dict(kafka_bootstrap=stack.kafka_bootstrap, topic_prefix=prefix)
    workers = await WorkerApp(WorkerSettings(**common, redis_url=stack.redis_url, experts="shapes,premium,textbot"),
                              catalog).start()
    amnesiac = await WorkerApp(WorkerSettings(**common, redis_url=stack.redis_url.rsplit("/", 1)[0] + "/7",
                                              experts="ocr"), catalog).start()
    router = await RouterApp(RouterSettings(**common, redis_url=stack.redis_url, port=0, seed=4,
                                            default_timeout_ms=20_000, max_part_bytes=400_000,
                                            max_image_pixels=4_000_000), catalog, embedder=embedder).start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{router.port}",
                                        options=[("grpc.max_send_message_length", 64 * 2**20)])
    yield router, router_pb2_grpc.RouterStub(channel)
    await bounded(channel.close(), 30, "closing the channel")
    await bounded(router.stop(grace=1), 60, "stopping the router")
    await bounded(workers.stop(), 60, "stopping the workers")
    await bounded(amnesiac.stop(), 60, "stopping the ocr workers")


async def decisions(stack, router, decision_id):
    msgs = await read_topic(stack.kafka_bootstrap, router.s.decisions_topic,
                            lambda ms: any(m.decision_id == decision_id for m in ms),
                            decode=lambda v: decode(v, events_pb2.DecisionEvent))
    return next(m for m in msgs if m.decision_id == decision_id)


async def test_an_image_reaches_the_shape_detector_by_claim_check(vision, stack):
    router, stub = vision
    resp = await stub.Route(router_pb2.RouteRequest(
        query="How many circles are there?", parts=[image(SHAPES, "scene.png")],
        options=router_pb2.RouteOptions(allowed_experts=["shapes"])))
    assert resp.expert == "shapes" and resp.answer == "2" and not resp.fallback
    ev = await decisions(stack, router, resp.decision_id)
    assert ev.modality == "image" and len(ev.context) == context_dim(384)
    [ref] = ev.parts
    assert ref.sha256 == hashlib.sha256(SHAPES).hexdigest() and ref.media_type == "image/png" and ref.name == "scene.png"
    expected = media_features(check_parts([("image/png", SHAPES, "")], MediaLimits()))["image"]
    block = np.array(ev.context[-MEDIA_DIM:])
    assert np.allclose(block[:8], expected, atol=1e-6) and not block[8:].any()
    # The bytes are in Redis once, under their hash; the Kafka request carries only the ref.
    requests = await read_topic(stack.kafka_bootstrap, router.s.expert_topic("shapes"),
                                lambda ms: any(m.decision_id == resp.decision_id for m in ms),
                                decode=lambda v: decode(v, events_pb2.ExpertRequest))
    req = next(m for m in requests if m.decision_id == resp.decision_id)
    assert list(req.parts) == [ref] and len(req.SerializeToString()) < 1000 < len(SHAPES)
    r = aioredis.from_url(stack.redis_url)
    assert await r.get(f"{router.s.redis_prefix}part:{ref.sha256}") == SHAPES
    assert 0 < await r.ttl(f"{router.s.redis_prefix}part:{ref.sha256}") <= router.s.part_ttl_s
    await r.aclose()


async def test_the_ocr_answer_comes_back_through_the_premium_stand_in(vision):
    _, stub = vision
    resp = await stub.Route(router_pb2.RouteRequest(
        query="What is the total on this receipt?", parts=[image(RECEIPT, "receipt.png")],
        options=router_pb2.RouteOptions(allowed_experts=["premium"])))
    assert resp.expert == "premium" and resp.answer == "7.75"


async def test_a_part_gone_from_the_claim_check_falls_back(vision, stack):
    """The ocr worker finds nothing under the ref (its Redis database never had it, as if the
    part expired): it answers with an error, the router records that and asks the fallback."""
    router, stub = vision
    resp = await stub.Route(router_pb2.RouteRequest(
        query="What does the sign say?", parts=[image(RECEIPT)],
        options=router_pb2.RouteOptions(allowed_experts=["ocr", "premium"], cost_weight=100.0)))
    assert resp.chosen_expert == "ocr" and resp.fallback and resp.expert == "premium"
    assert "CORNER CAFE" in resp.answer
    results = await read_topic(stack.kafka_bootstrap, router.s.results_topic,
                               lambda ms: sum(m.decision_id == resp.decision_id for m in ms) >= 2,
                               decode=lambda v: decode(v, events_pb2.ExpertResult))
    failed = next(m for m in results if m.decision_id == resp.decision_id and m.expert == "ocr")
    assert not failed.ok and re.search(r"part \w+ \(image/png\) expired or missing from the claim check", failed.error)


NOISE = png(Image.fromarray(np.random.default_rng(0).integers(0, 255, (400, 400, 3), dtype=np.uint8)))


@pytest.mark.parametrize("request_, message", [
    (router_pb2.RouteRequest(query="what is it?", parts=[image(RECEIPT, "r.jpg", "image/jpeg")]),
     r"parts\[0\] \('r.jpg'\): declared image/jpeg but the bytes are image/png"),
    (router_pb2.RouteRequest(query="what is it?", parts=[image(RECEIPT[:300], "cut.png")]),
     r"parts\[0\] \('cut.png'\): undecodable image/png"),
    (router_pb2.RouteRequest(query="what is it?", parts=[image(SHAPES), image(NOISE, "noise.png")]),
     r"parts\[1\] \('noise.png'\): \d+ bytes, the limit is 400000"),
    (router_pb2.RouteRequest(query="what is it?", parts=[image(png(Image.new("1", (5000, 5000))), "bomb.png")]),
     r"parts\[0\] \('bomb.png'\): image is 5000x5000 = 25000000 pixels, the limit is 4000000"),
    (router_pb2.RouteRequest(query="what is it?", parts=[image(b"%PDF-1.4 nonsense", "x", "image/webp")]),
     r"declared image/webp but the bytes are application/pdf"),
    (router_pb2.RouteRequest(query="transcribe", parts=[router_pb2.ContentPart(media_type="audio/wav",
                                                                              data=tone(440))]),
     r"no configured expert accepts modality 'audio'"),
    (router_pb2.RouteRequest(query="what is it?", parts=[image(SHAPES)],
                             options=router_pb2.RouteOptions(allowed_experts=["textbot"])),
     r"no configured expert accepts modality 'image' among \['textbot'\]"),
    (router_pb2.RouteRequest(query="what is it?", parts=[image(SHAPES)],
                             options=router_pb2.RouteOptions(modality="audio")),
     r"options.modality 'audio' does not match the parts \(image\)"),
    (router_pb2.RouteRequest(query="", parts=[]), r"query is empty \(and there are no parts\)"),
], ids=["type-mismatch", "truncated", "too-big", "pixel-bomb", "pdf-as-webp", "no-audio-expert",
        "not-allowed", "modality-mismatch", "nothing"])
async def test_bad_parts_are_invalid_argument_and_lose_nothing_else(vision, request_, message):
    _, stub = vision
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Route(request_)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert re.search(message, err.value.details()), err.value.details()
    ok = await stub.Decide(router_pb2.DecideRequest(query="How many circles?", parts=[image(SHAPES)]))
    assert ok.expert in ("ocr", "shapes", "premium")


async def test_the_router_folds_clip_image_embeddings_into_the_query(stack, prefix, tiny_clip, tmp_path):
    """With a CLIP model configured (here a small random checkpoint, on the CPU), the
    decision's embedding is the query's and the image's, joined in one space."""
    from bandit.embedder import Embedder, joint

    clip = Embedder(str(tiny_clip), device="cpu")
    catalog = ExpertCatalog.from_file(write_catalog(tmp_path / "experts.toml", {
        "shapes": {"backend": "vision_pipeline", "modalities": ["image"], "options": {"stages": ["shapes"]}}}))
    router = await RouterApp(RouterSettings(kafka_bootstrap=stack.kafka_bootstrap, redis_url=stack.redis_url,
                                            topic_prefix=prefix, port=0), catalog, embedder=clip).start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{router.port}") as channel:
            resp = await router_pb2_grpc.RouterStub(channel).Decide(router_pb2.DecideRequest(
                query="How many circles are there?", parts=[image(SHAPES)]))
        ev = await decisions(stack, router, resp.decision_id)
    finally:
        await bounded(router.stop(grace=1), 60, "stopping the router")
    text = clip.encode(["How many circles are there?"])[0]
    picture = clip.encode_images([Image.open(io.BytesIO(SHAPES)).convert("RGB")])
    assert ev.embedding_model.endswith("/16+image") and len(ev.context) == context_dim(16)
    np.testing.assert_allclose(ev.context[:16], joint(text, picture), atol=1e-5)
