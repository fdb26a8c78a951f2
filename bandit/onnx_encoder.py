"""The embedding model on ONNX Runtime, optionally quantised to int8.

sentence-transformers' own ONNX backend needs optimum-onnx, which pins transformers below
the version sentence-transformers 6 needs; so the model's transformer is exported here
with torch's ONNX exporter (once, into the cache folder), run with onnxruntime, and
pooled and normalised as the model's own pipeline says. int8 is onnxruntime's dynamic
quantisation of the MatMul weights, per channel (the embedding table stays float: it
moves the vectors most and costs nothing to look up). Only pipelines of a Transformer, a
mean/cls/max Pooling and an optional Normalize are offered; others are refused by name.
"""
from __future__ import annotations

import fcntl
import logging
import os
import re
import threading
from pathlib import Path

import numpy as np

from common.cache import cache_dir

log = logging.getLogger(__name__)


def _pooling(model) -> str:
    kinds = [type(m).__name__ for m in model]
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise ValueError(f"the onnx backend runs Transformer + Pooling [+ Normalize] models; this one is {kinds}")
    mode = getattr(model[1], "pooling_mode", None) or model[1].get_config_dict().get("pooling_mode")
    if mode not in ("mean", "cls", "max"):
        raise ValueError(f"the onnx backend pools by mean, cls or max, not {mode!r}")
    return mode


def _export(model, path: Path) -> None:
    import torch

    transformer = model[0].auto_model.eval()
    names = [n for n in model.tokenizer.model_input_names if n in ("input_ids", "attention_mask", "token_type_ids")]

    class Hidden(torch.nn.Module):        # keyword arguments: forward's positional order varies by model
        def __init__(self):
            super().__init__()
            self.m = transformer

        def forward(self, *inputs):
            return self.m(**dict(zip(names, inputs))).last_hidden_state

    sample = model.tokenizer(["an example", "a second, longer example"], padding=True, return_tensors="pt")
    axes = {n: {0: "batch", 1: "tokens"} for n in [*names, "hidden"]}
    with torch.no_grad():
        torch.onnx.export(Hidden(), tuple(sample[n] for n in names), str(path), input_names=names,
                          output_names=["hidden"], dynamic_axes=axes, opset_version=17, dynamo=False)


class _Tokens:
    """The model's tokenizer for the ONNX passes: a micro-batch tokenised in one call, then
    padded per pass. With a fast (Rust) tokenizer, a copy of it set once to truncate and not
    pad: its `encode_batch` needs no lock (its settings never change) and runs with the
    GIL released, where the transformers wrapper holds the GIL about 0.3 ms per long
    prompt, time that a router's event loop and the other passes wait for. Any other
    tokenizer goes through the wrapper, one call at a time."""

    def __init__(self, tokenizer):
        self.wrapper = tokenizer
        backend = getattr(tokenizer, "_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
        self.fast = None
        if backend is not None:
            from tokenizers import Tokenizer

            try:
                self.fast = Tokenizer.from_str(backend.to_str())
                self.fast.no_padding()
            except Exception as exc:        # a backend that cannot be copied (custom Python parts)
                log.info("tokenizing through the transformers wrapper: %s", exc)
                self.fast = None
        self.pad_id = tokenizer.pad_token_id or 0
        self.left = getattr(tokenizer, "padding_side", "right") == "left"
        self._length = None
        self._lock = threading.Lock()       # the wrapper, and the copy's truncation when the length changes

    def encode(self, texts: list[str], max_length: int) -> list[dict[str, list[int]]]:
        """Per text, unpadded: input_ids, attention_mask, token_type_ids."""
        if self.fast is None:
            with self._lock:                # a wrapper sets its padding per call: not for two threads at once
                enc = self.wrapper(texts, padding=False, truncation=True, max_length=max_length)
            return [{k: enc[k][i] for k in enc.keys()} for i in range(len(texts))]
        if self._length != max_length:
            with self._lock:
                self.fast.enable_truncation(max_length=max_length)
                self._length = max_length
        return [{"input_ids": e.ids, "attention_mask": e.attention_mask, "token_type_ids": e.type_ids}
                for e in self.fast.encode_batch(texts)]

    def pad(self, rows: list[dict[str, list[int]]], names: list[str]) -> dict[str, np.ndarray]:
        """One pass's inputs: every row padded to the longest, as the wrapper pads them."""
        width = max(len(r["input_ids"]) for r in rows)
        out = {}
        for name in names:
            fill = self.pad_id if name == "input_ids" else 0
            a = np.full((len(rows), width), fill, dtype=np.int64)
            for i, r in enumerate(rows):
                v = r[name]
                if self.left:
                    a[i, width - len(v):] = v
                else:
                    a[i, :len(v)] = v
            out[name] = a
        return out


class OnnxEncoder:
    """`encode(texts)` as SentenceTransformer.encode(normalize_embeddings=True) does it, on onnxruntime.

    With `wide_threads`, a second session on that many threads runs the long passes that
    have the cores to themselves (`encode(..., wide=True)`): a lone long request then gets
    every core, while passes that run beside others keep `threads` each. A short pass stays
    on one thread even alone: without spinning, each operator's hand-off between threads
    costs more than the split saves (2 cores, int8, one text, 5 ms apart as serial requests
    come: 12 tokens 1.3 ms on one thread against 2.0 on two, 64 tokens 5.1 against 6.0,
    128 11.1 against 12.0, 192 18.6 against 17.9, 256 28.7 against 27.6)."""

    WIDE_FROM_TOKENS = 176           # the crossover measured above

    def __init__(self, model, name: str, quantize: str = "", threads: int | None = None,
                 wide_threads: int | None = None):
        import onnxruntime as ort

        self.pooling = _pooling(model)
        self.tokens, self.model = _Tokens(model.tokenizer), model
        folder = cache_dir() / "models" / re.sub(r"[^A-Za-z0-9_.-]", "_", name.strip("/"))
        folder.mkdir(parents=True, exist_ok=True)
        plain, int8 = folder / "model.onnx", folder / "model_int8.onnx"
        with open(folder / ".lock", "w") as lock:      # replicas starting together export once
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not plain.exists():
                log.info("exporting %s to ONNX in %s (once)", name, folder)
                _export(model, folder / "model.tmp.onnx")
                os.replace(folder / "model.tmp.onnx", plain)
            if quantize == "int8" and not int8.exists():
                from onnxruntime.quantization import QuantType, quantize_dynamic

                log.info("quantizing %s to int8 (once)", name)
                quantize_dynamic(str(plain), str(folder / "model_int8.tmp.onnx"), weight_type=QuantType.QInt8,
                                 per_channel=True, op_types_to_quantize=["MatMul"])
                os.replace(folder / "model_int8.tmp.onnx", int8)
        def session(n_threads: int | None):
            options = ort.SessionOptions()
            if n_threads:
                options.intra_op_num_threads = n_threads
            # No busy-waiting between passes: in a router the model shares the cores with the
            # event loop, gRPC and Kafka clients, which a spinning thread pool starves.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            return ort.InferenceSession(str(int8 if quantize else plain), options, providers=["CPUExecutionProvider"])

        self.session = session(threads)
        self.wide = session(wide_threads) if wide_threads and wide_threads != threads else self.session
        self.inputs = [i.name for i in self.session.get_inputs()]
        self._padded = list(dict.fromkeys([*self.inputs, "attention_mask"]))    # the mask pools too

    @property
    def max_seq_length(self) -> int:
        return self.model.max_seq_length

    def encode(self, texts: list[str], batch_size: int = 32, wide: bool = False) -> np.ndarray:
        # Longest first, as sentence-transformers does: a batch pads to its longest text, so
        # texts of like length together waste the least work. Rows go back in input order.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        rows = self.tokens.encode([texts[i] for i in order], self.max_seq_length)
        out = []
        for start in range(0, len(texts), batch_size):
            enc = self.tokens.pad(rows[start:start + batch_size], self._padded)
            session = self.wide if wide and enc["input_ids"].shape[1] >= self.WIDE_FROM_TOKENS else self.session
            hidden = session.run(None, {n: enc[n] for n in self.inputs})[0]
            mask = enc["attention_mask"][..., None].astype(np.float32)
            if self.pooling == "mean":
                v = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
            elif self.pooling == "cls":
                v = hidden[:, 0]
            else:
                v = np.where(mask > 0, hidden, -1e9).max(axis=1)
            out.append((v / np.clip(np.linalg.norm(v, axis=1, keepdims=True), 1e-12, None)).astype(np.float32))
        if not out:
            return np.empty((0, self.model.get_embedding_dimension()), np.float32)
        vectors = np.empty((len(texts), out[0].shape[1]), np.float32)
        vectors[order] = np.concatenate(out)
        return vectors
