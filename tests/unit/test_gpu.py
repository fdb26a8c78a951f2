"""The CUDA paths: the embedder and the neural bandit on the GPU agree with the CPU.
These need a CUDA GPU; on machines without one they are skipped, and say so."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bandit.policies import make_policy

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; this machine has none")


@needs_gpu
def test_embedder_on_cuda_matches_cpu():
    from bandit.embedder import Embedder

    texts = ["What is the capital of Peru?", "Integrate x^2 from 0 to 3."]
    gpu, cpu = Embedder(device="cuda"), Embedder(device="cpu")
    assert gpu.device == "cuda"
    assert gpu.forward_batch == gpu.batch_size and cpu.forward_batch == 8   # CUDA: one pass per micro-batch
    np.testing.assert_allclose(gpu.encode(texts), cpu.encode(texts), atol=1e-4)


@needs_gpu
def test_neural_bandit_trains_on_cuda_and_serves_on_cpu():
    rng = np.random.default_rng(0)
    params = {"train_every": 50, "epsilon": 0.0}
    learner = make_policy("neural_linear", 8, {**params, "device": "cuda"}, seed=1)
    for i in range(200):
        x = rng.standard_normal(8)
        learner.update(f"e{i % 2}", x, float(x[0] > 0) if i % 2 else float(x[0] <= 0))
    router = make_policy("neural_linear", 8, {**params, "device": "cpu"}, seed=2)
    router.load_parts(learner.parts())
    xs = rng.standard_normal((50, 8))
    right = sum(router.select(x, ["e0", "e1"]).scores["e1"].estimated_quality >
                router.select(x, ["e0", "e1"]).scores["e0"].estimated_quality for x in xs if x[0] > 0)
    assert right >= 0.8 * sum(xs[:, 0] > 0)
