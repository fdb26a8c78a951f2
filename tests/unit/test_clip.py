"""The CLIP path: a sentence-transformers CLIP model (here a small checkpoint with random
weights, built by the test) embeds a request's images in the text's space, folded into
the query's vector; on a machine with a GPU, the same on CUDA."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bandit.embedder import Embedder, joint
from simulations.media_render import shapes_image, text_image


def images():
    import io

    from PIL import Image

    return [Image.open(io.BytesIO(b)) for b in (text_image(["EXIT"]), shapes_image([("circle", "red", (60, 60, 40))]))]


def check(embedder: Embedder) -> None:
    assert embedder.embeds_images and embedder.dim == 16 and embedder.version.endswith("/16+image")
    vecs = embedder.encode_images(images())
    assert vecs.shape == (2, 16) and np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(vecs[0], vecs[1])                         # the two images differ
    text = embedder.encode(["What does the sign say?"])[0]
    both = joint(text, vecs[:1])
    assert np.isclose(np.linalg.norm(both), 1.0, atol=1e-5)
    np.testing.assert_allclose(both, (text + vecs[0]) / np.linalg.norm(text + vecs[0]), atol=1e-6)
    assert joint(text, None) is text


def test_clip_embeds_images_on_the_cpu(tiny_clip):
    check(Embedder(str(tiny_clip), device="cpu"))
    assert not Embedder(device="cpu").embeds_images               # MiniLM: text only
    with pytest.raises(ValueError, match="does not embed images"):
        Embedder(device="cpu").encode_images(images())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; this machine has none")
def test_clip_embeds_images_on_cuda_like_the_cpu(tiny_clip):
    gpu, cpu = Embedder(str(tiny_clip), device="cuda"), Embedder(str(tiny_clip), device="cpu")
    check(gpu)
    np.testing.assert_allclose(gpu.encode_images(images()), cpu.encode_images(images()), atol=1e-4)
