"""The embedder's backends, truncation and cache: ONNX float32 gives torch's vectors,
int8 stays close, the export happens once, a repeated query skips the model."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from bandit.embedder import Embedder
from common.cache import cache_dir

TEXTS = ["What is the capital of Peru?", "Compute 17 times 23.",
         "Write a Python function that returns the n-th Fibonacci number, iteratively, with a docstring. " * 6]


@pytest.fixture(scope="module")
def torch_vectors(embedder) -> np.ndarray:
    return embedder.encode(TEXTS)


def test_onnx_float32_gives_torch_vectors_and_int8_stays_close(torch_vectors):
    onnx = Embedder(backend="onnx")
    assert onnx.version == "model/384" and onnx.backend == "onnx"
    assert (onnx.encode(TEXTS) * torch_vectors).sum(axis=1).min() > 0.9999
    exported = cache_dir() / "models"
    plain = next(exported.rglob("model.onnx"))
    before = plain.stat().st_mtime_ns
    int8 = Embedder(backend="onnx-int8")
    assert int8.version == "model/384+int8" and plain.stat().st_mtime_ns == before      # exported once
    cos = (int8.encode(TEXTS) * torch_vectors).sum(axis=1)
    assert cos.min() > 0.97 and np.allclose(np.linalg.norm(int8.encode(TEXTS), axis=1), 1, atol=1e-5)


def test_a_shorter_sequence_truncates_long_queries_only(torch_vectors):
    short = Embedder(max_seq_length=16)
    assert short.version == "model/384@16"
    cos = (short.encode(TEXTS) * torch_vectors).sum(axis=1)
    assert cos[:2].min() > 0.9999 and cos[2] < 0.99           # only the long one was cut


@pytest.mark.parametrize("length", [256, 16])
def test_the_onnx_tokens_are_the_wrappers_tokens(embedder, length):
    """The ONNX passes tokenise a micro-batch with a copy of the fast tokenizer (the GIL
    released) and pad per pass: the same arrays as the transformers wrapper gives, and the
    same through the wrapper itself for a tokenizer that is not fast."""
    from bandit.onnx_encoder import _Tokens

    tokenizer = embedder.model.tokenizer
    names = ["input_ids", "attention_mask", "token_type_ids"]
    want = tokenizer(TEXTS, padding=True, truncation=True, max_length=length, return_tensors="np")

    class NotFast:                       # the wrapper's interface without its Rust backend
        is_fast, pad_token_id, padding_side = False, tokenizer.pad_token_id, "right"

        def __call__(self, *args, **kw):
            return tokenizer(*args, **kw)

    for tokens in (_Tokens(tokenizer), _Tokens(NotFast())):
        got = tokens.pad(tokens.encode(TEXTS, length), names)
        for n in names:
            np.testing.assert_array_equal(got[n], want[n])
    assert _Tokens(tokenizer).fast is not None and _Tokens(NotFast()).fast is None


def test_onnx_truncates_where_torch_does():
    """The length is set on the embedder after the ONNX encoder is built: the tokens follow it."""
    torch16, onnx16 = Embedder(max_seq_length=16), Embedder(backend="onnx", max_seq_length=16)
    assert (onnx16.encode(TEXTS) * torch16.encode(TEXTS)).sum(axis=1).min() > 0.9999


@pytest.mark.parametrize("backend", ["tpu", "onnx-int4", "torch-int8"])
def test_bad_backends_are_named(backend):
    with pytest.raises(ValueError, match=f"embedding backend '{backend}' is not one of"):
        Embedder(backend=backend)


async def test_a_repeated_query_is_answered_from_the_cache_lru():
    emb = Embedder(cache_size=2)
    await emb.start()
    try:
        first = await emb.embed(TEXTS[0])
        again = await emb.embed(TEXTS[0])
        assert again is first and (emb.cache_hits, emb.cache_misses) == (1, 1)
        with pytest.raises(ValueError):
            again[0] = 1.0                                    # shared: read-only
        await emb.embed(TEXTS[1])
        await emb.embed(TEXTS[2])                             # evicts TEXTS[0], the least recent
        await emb.embed(TEXTS[0])
        assert (emb.cache_hits, emb.cache_misses) == (1, 4)
        assert (await asyncio.gather(*(emb.embed(TEXTS[2]) for _ in range(3))))[0] is not None
    finally:
        await emb.stop()


async def test_parallel_onnx_passes_give_each_request_its_own_vector(torch_vectors):
    """Micro-batches of 4 texts, 3 at once: every concurrent request gets the vector of its
    own text (float32 ONNX: torch's), a bulk encode splits the same way, torch stays at one."""
    texts = [f"{t} (variant {i})" for i in range(14) for t in TEXTS]
    emb = Embedder(backend="onnx", batch_size=4, parallel=3)
    assert emb.parallel == 3 and Embedder().parallel == 1
    serial = Embedder(backend="onnx", batch_size=4, parallel=1).encode(texts)
    assert np.abs(emb.encode(texts) - serial).max() < 1e-4
    await emb.start()
    try:
        got = await asyncio.gather(*(emb.embed(t) for t in texts))
        assert np.abs(np.stack(got) - serial).max() < 1e-4
        assert (np.stack(await asyncio.gather(*(emb.embed(t) for t in TEXTS))) * torch_vectors).sum(axis=1).min() > 0.9999
    finally:
        await emb.stop()


async def test_a_lone_pass_gets_every_core_and_overlapping_passes_share_them(torch_vectors):
    """Serial traffic may use the session with every core's threads (its latency), passes that
    overlap run on one share each; both give the same vectors."""
    emb = Embedder(backend="onnx", batch_size=2, parallel=2)
    assert emb.onnx.wide is not emb.onnx.session
    assert np.abs(emb.onnx.encode(TEXTS, wide=True) - emb.onnx.encode(TEXTS)).max() < 1e-5
    runs, encode = [], emb.onnx.encode

    def recording(texts, batch_size=32, wide=False):
        runs.append(wide)
        return encode(texts, batch_size, wide)

    emb.onnx.encode = recording
    await emb.start()
    try:
        runs.clear()
        for text in TEXTS:                                   # one at a time: every pass alone
            assert float(np.dot(await emb.embed(text), torch_vectors[TEXTS.index(text)])) > 0.9999
        assert runs == [True] * len(TEXTS)
        runs.clear()
        await asyncio.gather(*(emb.embed(f"{t} ({i})") for i in range(10) for t in TEXTS))
        assert False in runs and len(runs) >= 2               # the load overlapped passes
    finally:
        await emb.stop()


def test_only_a_long_lone_pass_is_split_over_the_cores():
    """A lone pass runs on every core's threads only from WIDE_FROM_TOKENS tokens on: a short
    one is faster on one thread (each operator's hand-off costs more than the split saves)."""
    emb = Embedder(backend="onnx", batch_size=2, parallel=2)
    used = []

    class Spy:
        def __init__(self, name, session):
            self.name, self.session = name, session

        def run(self, *args, **kw):
            used.append(self.name)
            return self.session.run(*args, **kw)

    narrow_session, wide_session = emb.onnx.session, emb.onnx.wide
    emb.onnx.session, emb.onnx.wide = Spy("narrow", narrow_session), Spy("wide", wide_session)
    long = " ".join(f"word{i}" for i in range(400))           # past the cut at max_seq_length
    lone_short, lone_long = emb.onnx.encode([TEXTS[0]], wide=True), emb.onnx.encode([long], wide=True)
    beside_long = emb.onnx.encode([long])
    assert used == ["narrow", "wide", "narrow"]
    assert emb.onnx.max_seq_length >= emb.onnx.WIDE_FROM_TOKENS
    assert np.abs(lone_long - beside_long).max() < 1e-5 and lone_short.shape == (1, emb.dim)


async def test_a_burst_is_split_over_the_idle_passes():
    """16 requests at once and 2 idle passes: each pass takes its half, not one pass all 16
    while the other core waits (a loaded router then ran at half the model's throughput),
    and neither runs on the every-core session meant for a request alone."""
    emb = Embedder(backend="onnx", batch_size=32, parallel=2)
    sizes, wide, encode = [], [], emb._encode

    def recording(texts, alone=False):
        sizes.append(len(texts))
        wide.append(alone)
        return encode(texts, alone)

    emb._encode = recording
    await emb.start()
    try:
        sizes.clear()                                         # the warm-up pass
        wide.clear()
        got = await asyncio.gather(*(emb.embed(f"{TEXTS[i % 3]} ({i})") for i in range(16)))
        assert len(got) == 16 and sizes == [8, 8]
        assert wide == [False, False]                         # neither half had the cores to itself
    finally:
        await emb.stop()


def test_onnx_runs_one_text_per_pass_so_an_int8_vector_ignores_its_batch_mates():
    """No padding on ONNX (passes of one text), and int8 quantises each pass's activations on
    their own range: a text's vector is the same alone as beside others. torch keeps 8."""
    int8 = Embedder(backend="onnx-int8")
    assert int8.forward_batch == 1 and Embedder().forward_batch == 8
    assert Embedder(backend="onnx-int8", forward_batch=4).forward_batch == 4
    together = int8.encode(TEXTS)
    alone = np.stack([int8.encode([t])[0] for t in TEXTS])
    assert np.abs(together - alone).max() < 1e-6
