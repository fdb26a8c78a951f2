"""Content parts: every bad part is refused with its name and reason; features and the
classical vision stage read real rendered images, PDFs and tones."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from bandit.context import FEATURE_VERSION, build_context, context_dim
from bandit.media_features import FEATURIZERS, MEDIA_DIM, describe_media, media_features
from common.media import MediaError, MediaLimits, check_parts
from simulations.media_render import pdf, png, shapes_image, text_image, tone
from common.vision import Findings, answer_by_rule, detect_shapes, read_text

LIMITS = MediaLimits(max_parts=3, max_part_bytes=200_000, max_request_bytes=300_000, max_image_pixels=4_000_000,
                     max_pdf_pages=3, max_audio_s=5.0)
IMG = shapes_image([("circle", "red", (100, 100, 50))])
NOISE = png(Image.fromarray(np.random.default_rng(0).integers(0, 255, (230, 230, 3), dtype=np.uint8)))  # ~160 kB


def bomb() -> bytes:
    """A 1-bit 20000x20000 PNG: a few kB on the wire, 400 million pixels decoded."""
    return png(Image.new("1", (20_000, 20_000)))


BAD = [
    ([("image/tiff", IMG, "a")], "parts[0] ('a'): media type 'image/tiff' is not one of"),
    ([("image/png", b"", "")], "parts[0]: empty"),
    ([("image/jpeg", IMG, "photo")], "parts[0] ('photo'): declared image/jpeg but the bytes are image/png"),
    ([("image/png", b"GIF89a" + b"\0" * 20, "")], "declared image/png but the bytes are image/gif"),
    ([("application/pdf", b"hello world", "")], "declared application/pdf but the bytes are of no known media type"),
    ([("image/png", IMG[: len(IMG) // 2], "half")], "parts[0] ('half'): undecodable image/png"),
    ([("image/png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "")], "undecodable image/png"),
    ([("image/png", bomb(), "bomb")], "image is 20000x20000 = 400000000 pixels, the limit is 4000000"),
    ([("image/png", NOISE, "")] * 2, "parts hold 3"),
    ([("image/png", IMG, "")] * 4, "parts has 4 entries, the limit is 3"),
    ([("image/png", IMG, ""), ("image/png", b"\x89PNG\r\n\x1a\n" + b"\x01" * 250_000, "huge")],
     "parts[1] ('huge'): 250008 bytes, the limit is 200000"),
    ([("application/pdf", pdf(["one"])[:-40], "cut")], "parts[0] ('cut'): truncated PDF"),
    ([("application/pdf", pdf(["a", "b", "c", "d"]), "long")], "document has 4 pages, the limit is 3"),
    ([("application/pdf", b"%PDF-1.4\n garbage \n%%EOF", "")], "undecodable application/pdf"),
    ([("audio/wav", tone(440)[:-6000], "clip")], "parts[0] ('clip'): truncated audio (26044 of the 32044 bytes"),
    ([("audio/wav", tone(440, seconds=6.0), "")], "audio lasts 6s, the limit is 5s"),
    ([("audio/flac", tone(440, fmt="WAV"), "")], "declared audio/flac but the bytes are audio/wav"),
]


@pytest.mark.parametrize("parts, message", BAD, ids=[m[:40] for _, m in BAD])
def test_bad_parts_are_named_with_the_reason(parts, message):
    with pytest.raises(MediaError) as err:
        check_parts(parts, LIMITS)
    assert message in str(err.value), str(err.value)


def test_good_parts_of_every_kind_pass_with_aliases():
    parts = check_parts([("IMAGE/PNG", IMG, "x"), ("application/pdf", pdf(["hello"]), ""),
                         ("audio/x-wav", tone(440), ""), ("audio/flac", tone(440, fmt="FLAC"), "")], MediaLimits())
    assert [p.media_type for p in parts] == ["image/png", "application/pdf", "audio/wav", "audio/flac"]
    assert [p.modality for p in parts] == ["image", "document", "audio", "audio"]


def features_of(media_type: str, data: bytes) -> np.ndarray:
    (part,) = check_parts([(media_type, data, "")], MediaLimits())
    return media_features([part])[part.modality]


def test_image_features_tell_text_from_shapes():
    names = FEATURIZERS["image"].names
    page = dict(zip(names, features_of("image/png", text_image(["INVOICE 2291", "Paper 3.20", "Ink 14.99",
                                                                "TOTAL 18.19"]))))
    drawn = dict(zip(names, features_of("image/png", shapes_image([("circle", "red", (100, 100, 60)),
                                                                   ("square", "blue", (300, 200, 70))]))))
    assert page["text_likeness"] > 0.1 > drawn["text_likeness"]
    assert drawn["colourfulness"] > 0.3 > page["colourfulness"]
    assert all(0.0 <= v <= 1.0 for v in [*page.values(), *drawn.values()] if v == v)


def test_document_and_audio_features():
    names = FEATURIZERS["document"].names
    text = dict(zip(names, features_of("application/pdf", pdf(["A long page of text. " * 60, "More text."]))))
    blank = dict(zip(names, features_of("application/pdf", pdf(["", ""]))))
    assert text["scanned"] == 0.0 and blank["scanned"] == 1.0 and text["log_text_chars"] > blank["log_text_chars"]
    low = dict(zip(FEATURIZERS["audio"].names, features_of("audio/wav", tone(300))))
    high = dict(zip(FEATURIZERS["audio"].names, features_of("audio/wav", tone(3000))))
    assert high["spectral_centroid"] > 3 * low["spectral_centroid"] and high["zero_crossing_rate"] > low["zero_crossing_rate"]
    assert low["sample_rate"] == pytest.approx(16_000 / 48_000) and 0.3 < low["loudness"] < 1.0


def test_the_context_carries_each_modality_in_its_own_block():
    parts = check_parts([("image/png", IMG, ""), ("application/pdf", pdf(["Quarterly report: revenue grew."]), "")],
                        MediaLimits())
    feats, text = describe_media(parts, "Summarise this")
    assert text.startswith("Summarise this\n\n") and "Quarterly report" in text
    x = build_context(np.zeros(4), "Summarise this", "image", {}, feats)
    assert len(x) == context_dim(4) and MEDIA_DIM == 18 and "image8+document4+audio6" in FEATURE_VERSION
    block = x[-MEDIA_DIM:]
    assert np.allclose(block[:8], feats["image"]) and np.allclose(block[8:12], feats["document"])
    assert not block[12:].any()                                    # no audio part: its block stays zero
    assert not build_context(np.zeros(4), "hi", "text")[-MEDIA_DIM:].any()


def test_stage_one_reads_text_and_shapes_and_rules_answer():
    receipt = Image.open(io.BytesIO(text_image(["CORNER CAFE", "Latte 4.50", "Bagel 3.25", "TOTAL 7.75"])))
    text = read_text(receipt)                                      # real Tesseract
    assert "CORNER CAFE" in text and answer_by_rule("What is the total?", Findings(text, [])) == "7.75"
    scene = Image.open(io.BytesIO(shapes_image([("circle", "red", (80, 80, 50)), ("square", "blue", (250, 90, 55)),
                                                ("triangle", "green", (120, 260, 60)),
                                                ("circle", "yellow", (360, 260, 45))])))
    found = Findings("", detect_shapes(scene))
    assert sorted((b.colour, b.shape) for b in found.blobs) == [
        ("blue", "square"), ("green", "triangle"), ("red", "circle"), ("yellow", "circle")]
    assert answer_by_rule("How many circles are there?", found) == "2"
    assert answer_by_rule("What colour is the triangle?", found) == "green"
    assert answer_by_rule("What shape is the blue object?", found) == "square"
    assert answer_by_rule("Is this a cat or a dog?", found) is None
