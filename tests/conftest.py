"""Shared fixtures: one real Kafka broker and one real Redis for the session, a unique topic
and key prefix per test, the embedding model loaded once, and a two-kind routing data set.
"""
from __future__ import annotations

import json
import random
import uuid
from pathlib import Path

import pytest

from stack.local import LocalStack

MATH = ["What is {a} plus {b}?", "Compute {a} times {b}.", "Solve for x: x + {a} = {b}.",
        "What is {a} divided by {b}, rounded to two decimals?", "Find the derivative of x^{a} + {b}x.",
        "Calculate the integral of {a}x^2 from 0 to {b}."]
TRIVIA = ["What is the capital of {c}?", "Which river flows through {c}?", "Who was the first king of {c}?",
          "What language is spoken in {c}?", "Name a famous painter from {c}.", "When did {c} gain independence?"]
COUNTRIES = ["France", "Peru", "Kenya", "Norway", "Japan", "Chile", "Egypt", "Poland", "Canada", "Vietnam",
             "Ghana", "Spain", "Nepal", "Cuba", "Italy", "Mexico", "Ireland", "Greece", "India", "Brazil"]


def two_kind_prompts(n_each: int, seed: int) -> list[tuple[str, str]]:
    """(kind, prompt) pairs: arithmetic/calculus questions and country trivia, all distinct."""
    rnd = random.Random(seed)
    out, seen = [], set()
    while len(out) < 2 * n_each:
        kind = "math" if sum(k == "math" for k, _ in out) < n_each else "trivia"
        if kind == "math":
            p = rnd.choice(MATH).format(a=rnd.randint(2, 999), b=rnd.randint(2, 999))
        else:
            p = rnd.choice(TRIVIA).format(c=rnd.choice(COUNTRIES)) + f" (ref {rnd.randint(1, 10**6)})"
        if p not in seen:
            seen.add(p)
            out.append((kind, p))
    rnd.shuffle(out)
    return out


def write_two_kind_dataset(path: Path, n_each: int = 300, seed: int = 1) -> Path:
    """mathbot is right on math and wrong on trivia; triviabot the opposite; same price."""
    good = {"math": "mathbot", "trivia": "triviabot"}
    with path.open("w") as fh:
        for i, (kind, prompt) in enumerate(two_kind_prompts(n_each, seed)):
            outcomes = {e: {"quality": 1.0 if good[kind] == e else 0.1, "cost": 0.001, "latency_s": 0.01}
                        for e in ("mathbot", "triviabot")}
            fh.write(json.dumps({"id": f"q{i}", "prompt": prompt, "task": kind, "split": None,
                                 "modality": "text", "outcomes": outcomes}) + "\n")
    path.with_name(path.stem + ".meta.json").write_text(json.dumps({
        "name": path.stem, "cost_unit": "usd", "premium": "mathbot", "rows": 2 * n_each,
        "experts": {"mathbot": {}, "triviabot": {}}}))
    return path


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """A real single-node Apache Kafka (KRaft) and a real Redis on loopback."""
    s = LocalStack(tmp_path_factory.mktemp("stack"), kafka_bootstrap="", redis_url="").start()
    yield s
    s.stop()


@pytest.fixture
def prefix() -> str:
    """Isolates a test's topics, consumer groups and Redis keys from every other test."""
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture(scope="session")
def embedder():
    from bandit.embedder import Embedder

    return Embedder()


@pytest.fixture(scope="session")
def two_kind_data(tmp_path_factory) -> Path:
    return write_two_kind_dataset(tmp_path_factory.mktemp("data") / "twokind.jsonl")


@pytest.fixture(scope="session")
def prompts(two_kind_data) -> dict[str, list[str]]:
    """The data set's prompts by kind ("math", "trivia"): replay experts only know these."""
    from common.dataset import RoutingDataset

    rows = RoutingDataset.load(two_kind_data).rows
    return {k: [r.prompt for r in rows if r.task == k] for k in ("math", "trivia")}


def build_tiny_clip(out: Path) -> Path:
    """A CLIP checkpoint with random weights, built here (no weights can be downloaded):
    a byte-level vocabulary with no merges, 32-pixel images, 16-dimensional embeddings.
    Enough to exercise every line of the CLIP path; its embeddings mean nothing."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    chars = [chr(b) for b in printable] + [chr(256 + i) for i in range(256 - len(printable))]   # GPT-2's byte map
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(vocab) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = len(vocab), len(vocab) + 1
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps(vocab))
    (out / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(out / "vocab.json"), str(out / "merges.txt"))
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    text = dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=77, bos_token_id=len(vocab) - 2,
                eos_token_id=len(vocab) - 1, pad_token_id=len(vocab) - 1)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  image_size=32, patch_size=8)
    import torch

    torch.manual_seed(0)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(out)
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> Path:
    return build_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip")
