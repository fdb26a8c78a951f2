"""An image through the real processes: a router process and a worker process (child
processes, as deployed), the session's real Kafka and Redis, real Tesseract. The image
reaches the two-stage vision expert by claim check and its OCR answer comes back; the
decision event carries the image's features."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np

from bandit.media_features import MEDIA_DIM, media_features
from common.codec import decode
from common.media import MediaLimits, check_parts
from proto import events_pb2, router_pb2, router_pb2_grpc
from simulations.media_render import text_image
from stack.experts_file import write_catalog
from stack.local import ServiceProcess
from tests.helpers import read_topic, running

SIGN = text_image(["PLATFORM 4"], size=56, width=520)
ROOT = Path(__file__).resolve().parents[2]


async def test_an_image_goes_to_the_ocr_expert_and_its_answer_comes_back(stack, prefix, tmp_path):
    catalog = write_catalog(tmp_path / "experts.toml", {
        "ocr": {"backend": "vision_pipeline", "modalities": ["image"], "price_per_call": 0.0002,
                "options": {"stages": ["ocr"]}},
        "shapes": {"backend": "vision_pipeline", "modalities": ["image"], "premium": True, "price_per_call": 0.0001,
                   "options": {"stages": ["shapes"]}}})
    env = stack.env(BR_EXPERTS_FILE=catalog, BR_TOPIC_PREFIX=prefix, BR_PORT=0)
    procs = {"worker": ServiceProcess("workers.main", env, tmp_path / "worker.log"),
             "router": ServiceProcess("router_svc.main", env, tmp_path / "router.log")}
    with running(procs):
        async with grpc.aio.insecure_channel(f"127.0.0.1:{procs['router'].field('port')}") as channel:
            resp = await router_pb2_grpc.RouterStub(channel).Route(router_pb2.RouteRequest(
                query="What does the sign say?", timeout_ms=60_000,
                parts=[router_pb2.ContentPart(media_type="image/png", data=SIGN, name="sign.png")],
                options=router_pb2.RouteOptions(allowed_experts=["ocr"])), timeout=90)
    assert resp.expert == "ocr" and resp.answer == "PLATFORM 4" and not resp.fallback
    msgs = await read_topic(stack.kafka_bootstrap, f"{prefix}router.decisions",
                            lambda ms: any(m.decision_id == resp.decision_id for m in ms),
                            decode=lambda v: decode(v, events_pb2.DecisionEvent))
    ev = next(m for m in msgs if m.decision_id == resp.decision_id)
    assert ev.modality == "image" and [p.sha256 for p in ev.parts] == [hashlib.sha256(SIGN).hexdigest()]
    expected = media_features(check_parts([("image/png", SIGN, "")], MediaLimits()))["image"]
    assert np.allclose(np.array(ev.context[-MEDIA_DIM:])[:8], expected, atol=1e-6)


def test_the_multimodal_demo_routes_the_generated_set_through_the_live_stack(tmp_path):
    """`./run.sh demo --multimodal`, small: the set is generated (real pipelines), then its
    images go over gRPC through a fresh stack of its own, with ratings learned."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BR_")}
    env.update(BR_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(ROOT))
    demo = subprocess.run([sys.executable, "-m", "stack.demo", "--multimodal", "--multimodal-rows", "60",
                           "--queries", "30", "--warm-rows", "20", "--out", str(tmp_path / "out")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["queries"] == 30 and summary["errors"] == {} and summary["warm_start_rows"] == 20
    assert "generating the multimodal set (60 images)" in demo.stdout
    assert (tmp_path / "cache" / "multimodal-60" / "multimodal.meta.json").is_file()
