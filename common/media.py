"""Content parts (images, documents, audio) that ride beside a query: what each one is,
and whether it is what it claims to be.

A caller names each part's media type; the bytes must agree with it (magic numbers),
decode completely (a truncated PNG is refused, not half read), and stay inside the
limits: bytes per part, parts and bytes per request, pixels per image (read from the
header, so a decompression bomb is refused before it is decoded), pages per document,
seconds of audio. Every refusal is a MediaError that names the part; the router returns
it as INVALID_ARGUMENT and nothing else of the request is kept.
"""
from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass, field
from typing import Iterable

MEDIA_TYPES = {
    "image/png": "image", "image/jpeg": "image", "image/webp": "image", "image/gif": "image",
    "application/pdf": "document",
    "audio/wav": "audio", "audio/flac": "audio", "audio/ogg": "audio",
}
ALIASES = {"audio/x-wav": "audio/wav", "audio/wave": "audio/wav", "image/jpg": "image/jpeg",
           "audio/x-flac": "audio/flac"}


class MediaError(ValueError):
    """A part that cannot be used; the message names it."""


@dataclass(frozen=True)
class MediaLimits:
    max_parts: int = 8
    max_part_bytes: int = 10 * 2**20
    max_request_bytes: int = 20 * 2**20
    max_image_pixels: int = 40_000_000
    max_pdf_pages: int = 200
    max_audio_s: float = 600.0


@dataclass(frozen=True)
class Part:
    media_type: str                  # canonical (ALIASES applied)
    data: bytes = field(repr=False)
    name: str = ""

    @property
    def modality(self) -> str:
        return MEDIA_TYPES[self.media_type]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def sniff(data: bytes) -> str | None:
    """The media type the bytes themselves announce (their magic number), if a known one."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data.startswith(b"%PDF-"):
        return "application/pdf"
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "audio/wav"
    if data.startswith(b"fLaC"):
        return "audio/flac"
    if data.startswith(b"OggS"):
        return "audio/ogg"
    return None


def check_parts(parts: Iterable[tuple[str, bytes, str]], limits: MediaLimits) -> list[Part]:
    """(media_type, data, name) per part -> checked Parts, or MediaError naming the first bad one."""
    parts = list(parts)
    if len(parts) > limits.max_parts:
        raise MediaError(f"parts has {len(parts)} entries, the limit is {limits.max_parts}")
    total = sum(len(data) for _, data, _ in parts)
    if total > limits.max_request_bytes:
        raise MediaError(f"parts hold {total} bytes together, the limit is {limits.max_request_bytes}")
    return [check_part(i, media_type, data, name, limits) for i, (media_type, data, name) in enumerate(parts)]


def check_part(i: int, media_type: str, data: bytes, name: str, limits: MediaLimits) -> Part:
    label = f"parts[{i}]" + (f" ({name[:64]!r})" if name else "")
    declared = ALIASES.get(media_type.strip().lower(), media_type.strip().lower())
    if declared not in MEDIA_TYPES:
        raise MediaError(f"{label}: media type {media_type[:64]!r} is not one of {sorted(MEDIA_TYPES)}")
    if not data:
        raise MediaError(f"{label}: empty")
    if len(data) > limits.max_part_bytes:
        raise MediaError(f"{label}: {len(data)} bytes, the limit is {limits.max_part_bytes}")
    actual = sniff(data)
    if actual != declared:
        raise MediaError(f"{label}: declared {declared} but the bytes are "
                         + (actual or "of no known media type"))
    part = Part(declared, data, name)
    try:
        DECODERS[part.modality](part, limits)
    except MediaError as exc:
        raise MediaError(f"{label}: {exc}") from None
    except Exception as exc:   # any decoder failure on hostile bytes is the caller's error
        raise MediaError(f"{label}: undecodable {declared} ({type(exc).__name__}: {str(exc)[:120]})") from None
    return part


def open_image(part: Part, max_pixels: int):
    """The decoded image (RGB), after the pixel limit is checked from the header alone
    (this check replaces Pillow's own, which has a fixed limit and no way to name ours)."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        img = Image.open(io.BytesIO(part.data))
        w, h = img.size
        if w * h > max_pixels:
            raise MediaError(f"image is {w}x{h} = {w * h} pixels, the limit is {max_pixels}")
        img.load()   # a truncated file raises here
    return img.convert("RGB")


def read_pdf(part: Part, max_pages: int):
    from pypdf import PdfReader

    if b"%%EOF" not in part.data[-2048:]:
        raise MediaError("truncated PDF (no %%EOF marker at its end)")
    reader = PdfReader(io.BytesIO(part.data), strict=True)
    pages = len(reader.pages)
    if pages > max_pages:
        raise MediaError(f"document has {pages} pages, the limit is {max_pages}")
    return reader


def read_audio(part: Part, max_s: float):
    """(samples as float32, mono; sample rate). Refuses audio shorter than its header says."""
    import numpy as np
    import soundfile as sf

    if part.media_type == "audio/wav":                 # libsndfile quietly reads a cut WAV short
        riff = int.from_bytes(part.data[4:8], "little")
        if 0 < riff < 0xFFFFFFFF and riff + 8 > len(part.data):
            raise MediaError(f"truncated audio ({len(part.data)} of the {riff + 8} bytes its header announces)")
    info = sf.info(io.BytesIO(part.data))
    if info.frames <= 0 or info.samplerate <= 0:
        raise MediaError("audio has no samples")
    if info.frames / info.samplerate > max_s:
        raise MediaError(f"audio lasts {info.frames / info.samplerate:.0f}s, the limit is {max_s:.0f}s")
    samples, rate = sf.read(io.BytesIO(part.data), dtype="float32", always_2d=True)
    if len(samples) < info.frames:
        raise MediaError(f"truncated audio ({len(samples)} of {info.frames} frames)")
    return np.asarray(samples.mean(axis=1)), rate


DECODERS = {
    "image": lambda p, lim: open_image(p, lim.max_image_pixels),
    "document": lambda p, lim: read_pdf(p, lim.max_pdf_pages),
    "audio": lambda p, lim: read_audio(p, lim.max_audio_s),
}
