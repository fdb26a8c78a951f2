"""What the policy sees of a query's images, documents and audio: one featurizer per
modality, a registry, and a fixed number of features each (their block in the context).

Classical features by default, computed with Pillow, numpy and OpenCV: cheap, exact to
replay, and enough to tell a photographed page from a chart or a pile of shapes, which
is what decides between the OCR pipeline, the shape detector and the premium model.
Every feature is scaled to roughly [0, 1] so that no one of them swamps the embedding.
A request with several parts of one modality gets the mean of their features.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Sequence

import numpy as np

from common.media import MediaLimits, Part, open_image, read_audio, read_pdf

_LIMITS = MediaLimits()


class Featurizer(ABC):
    modality: str
    names: tuple[str, ...]

    @abstractmethod
    def features(self, part: Part) -> np.ndarray: ...


class ImageFeatures(Featurizer):
    modality = "image"
    names = ("log_pixels", "aspect", "brightness", "contrast", "colourfulness", "saturation",
             "edge_density", "text_likeness")

    def features(self, part: Part) -> np.ndarray:
        import cv2

        img = open_image(part, _LIMITS.max_image_pixels)
        full_w, full_h = img.size
        img.thumbnail((1024, 1024))                      # features of a bounded copy: same scale for all
        rgb = np.asarray(img, dtype=np.float32)
        r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
        rg, yb = r - g, 0.5 * (r + g) - b                # Hasler & Suesstrunk colourfulness
        colourful = math.hypot(rg.std(), yb.std()) + 0.3 * math.hypot(rg.mean(), yb.mean())
        gray = cv2.cvtColor(rgb.astype(np.uint8), cv2.COLOR_RGB2GRAY)
        hsv = cv2.cvtColor(rgb.astype(np.uint8), cv2.COLOR_RGB2HSV)
        edges = cv2.Canny(gray, 100, 200)
        return np.array([
            math.log1p(full_w * full_h) / 20.0,
            float(np.clip(math.log(full_w / full_h) / 2.0, -1.0, 1.0)),
            gray.mean() / 255.0,
            gray.std() / 128.0,
            min(colourful / 150.0, 1.0),
            hsv[..., 1].mean() / 255.0,
            float((edges > 0).mean()),
            text_likeness(gray),
        ], dtype=np.float32)


def text_likeness(gray: np.ndarray) -> float:
    """Share of the image covered by blobs shaped like lines of text: strokes joined
    horizontally into wide, short, dense boxes (the classic morphological text detector)."""
    import cv2

    grad = cv2.morphologyEx(gray, cv2.MORPH_GRADIENT, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)))
    _, bw = cv2.threshold(grad, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    joined = cv2.morphologyEx(bw, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (9, 1)))
    contours, _ = cv2.findContours(joined, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    area, total = 0.0, float(gray.shape[0] * gray.shape[1])
    for c in contours:
        x, y, w, h = cv2.boundingRect(c)
        if h < 6 or h > 0.2 * gray.shape[0] or w < 2 * h:
            continue
        fill = cv2.countNonZero(bw[y:y + h, x:x + w]) / float(w * h)
        if fill > 0.25:
            area += w * h
    return min(area / total * 2.0, 1.0)


class DocumentFeatures(Featurizer):
    modality = "document"
    names = ("log_pages", "log_text_chars", "scanned", "chars_per_page")

    def features(self, part: Part) -> np.ndarray:
        reader = read_pdf(part, _LIMITS.max_pdf_pages)
        pages = len(reader.pages)
        chars = len(document_text(part, max_pages=pages, reader=reader))
        per_page = chars / max(pages, 1)
        return np.array([math.log1p(pages) / 5.0, math.log1p(chars) / 12.0, float(per_page < 25),
                         min(per_page / 3000.0, 1.0)], dtype=np.float32)


def document_text(part: Part, max_pages: int = 5, max_chars: int = 20_000, reader=None) -> str:
    """The text layer of the first pages (empty for a scanned document); `reader`: the
    part already parsed, if it is."""
    reader = reader or read_pdf(part, _LIMITS.max_pdf_pages)
    out = []
    for page in reader.pages[:max_pages]:
        out.append(page.extract_text() or "")
        if sum(map(len, out)) >= max_chars:
            break
    return "\n".join(out)[:max_chars].strip()


class AudioFeatures(Featurizer):
    modality = "audio"
    names = ("log_duration", "sample_rate", "loudness", "spectral_centroid", "spectral_rolloff",
             "zero_crossing_rate")

    def features(self, part: Part) -> np.ndarray:
        samples, rate = read_audio(part, _LIMITS.max_audio_s)
        rms = float(np.sqrt(np.mean(samples ** 2))) if len(samples) else 0.0
        spectrum = np.abs(np.fft.rfft(samples[: rate * 30]))        # the first 30 s are enough
        freqs = np.fft.rfftfreq(min(len(samples), rate * 30), 1.0 / rate)
        power = spectrum.sum() or 1.0
        centroid = float((freqs * spectrum).sum() / power)
        rolloff = float(freqs[min(np.searchsorted(np.cumsum(spectrum), 0.85 * power), len(freqs) - 1)])
        nyquist = rate / 2.0
        zcr = float(np.mean(np.abs(np.diff(np.sign(samples))) > 0)) if len(samples) > 1 else 0.0
        return np.array([math.log1p(len(samples) / rate) / 7.0, rate / 48_000.0,
                         max(0.0, 1.0 + 20.0 * math.log10(max(rms, 1e-5)) / 100.0),
                         centroid / nyquist, rolloff / nyquist, zcr], dtype=np.float32)


FEATURIZERS: dict[str, Featurizer] = {}


def register(f: Featurizer) -> Featurizer:
    if f.modality in FEATURIZERS:
        raise ValueError(f"a featurizer for {f.modality!r} is registered twice")
    FEATURIZERS[f.modality] = f
    return f


for _f in (ImageFeatures(), DocumentFeatures(), AudioFeatures()):
    register(_f)

# The context's media block: each registered modality's features, in this order.
MEDIA_BLOCK = tuple((m, len(f.names)) for m, f in FEATURIZERS.items())
MEDIA_DIM = sum(n for _, n in MEDIA_BLOCK)


def media_features(parts: Sequence[Part]) -> dict[str, np.ndarray]:
    """modality -> mean features of the request's parts of that modality."""
    by: dict[str, list[np.ndarray]] = {}
    for part in parts:
        by.setdefault(part.modality, []).append(FEATURIZERS[part.modality].features(part))
    return {m: np.mean(v, axis=0).astype(np.float32) for m, v in by.items()}


def describe_media(parts: Sequence[Part], query: str) -> tuple[dict[str, np.ndarray], str]:
    """(features per modality, the text to embed): a document's text layer joins the
    query's, so the embedding says what the document is about."""
    text = query
    for part in parts:
        if part.modality == "document":
            body = document_text(part, max_chars=2000)
            if body:
                text = f"{text}\n\n{body}" if text else body
    return media_features(parts), text
