"""Real media made here: rendered text, drawn shapes, PDFs and tones.

The multimodal routing set and the tests need images, documents and audio whose true
content is known (what a receipt says, how many circles there are); nothing can be
downloaded, so they are drawn with Pillow, written with fpdf2 and synthesised with numpy.
"""
from __future__ import annotations

import io
import math

import numpy as np

RGB = {"red": (220, 30, 30), "orange": (245, 140, 20), "yellow": (235, 205, 20), "green": (40, 170, 60),
       "blue": (30, 70, 220), "purple": (140, 50, 190), "black": (10, 10, 10), "gray": (128, 128, 128)}


def png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def text_image(lines: list[str], size: int = 36, width: int = 720, background="white", ink="black") -> bytes:
    """Lines of text rendered as a PNG (a sign, a receipt, a page)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=size)
    step = int(size * 1.6)
    image = Image.new("RGB", (width, step * len(lines) + 2 * size), background)
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((size, size + i * step), line, fill=ink, font=font)
    return png(image)


def shapes_image(shapes: list[tuple[str, str, tuple[int, int, int]]], width: int = 480, height: int = 360,
                 background=(245, 245, 245)) -> bytes:
    """Filled shapes on a plain background: (shape, colour, (centre x, centre y, radius))."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    for shape, colour, (x, y, r) in shapes:
        fill = RGB[colour]
        if shape == "circle":
            draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)
        elif shape == "square":
            draw.rectangle((x - r, y - r, x + r, y + r), fill=fill)
        elif shape == "rectangle":
            draw.rectangle((x - int(1.6 * r), y - r, x + int(1.6 * r), y + r), fill=fill)
        else:
            sides = {"triangle": 3, "pentagon": 5, "hexagon": 6}[shape]
            draw.polygon([(x + r * math.cos(2 * math.pi * k / sides - math.pi / 2),
                           y + r * math.sin(2 * math.pi * k / sides - math.pi / 2)) for k in range(sides)], fill=fill)
    return png(image)


def pdf(pages: list[str]) -> bytes:
    """A PDF with a text layer, one page per string."""
    from fpdf import FPDF

    doc = FPDF()
    doc.set_font("Helvetica", size=12)
    for text in pages:
        doc.add_page()
        doc.multi_cell(0, 6, text)
    return bytes(doc.output())


def tone(freq_hz: float, seconds: float = 1.0, rate: int = 16_000, fmt: str = "WAV", amplitude: float = 0.3) -> bytes:
    """A sine tone as WAV, FLAC or OGG."""
    import soundfile as sf

    t = np.arange(int(seconds * rate)) / rate
    buf = io.BytesIO()
    sf.write(buf, (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32), rate, format=fmt,
             subtype="VORBIS" if fmt == "OGG" else None)
    return buf.getvalue()
