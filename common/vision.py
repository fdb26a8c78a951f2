"""Classical vision: Tesseract OCR, OpenCV shape and colour detection, and the rules that
answer a question from what they found. Stage 1 of the two-stage vision expert
(workers/backends/vision.py) and the scorer of the generated multimodal set
(simulations/multimodal_set.py) run this same code.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

SHAPES = ("triangle", "square", "rectangle", "pentagon", "hexagon", "circle")
COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "black", "white", "gray")
NUMBER = re.compile(r"(\d[\d,]*\.\d{2}|\d[\d,]*)")


@dataclass(frozen=True)
class Blob:
    shape: str
    colour: str
    area: float


@dataclass
class Findings:
    text: str
    blobs: list[Blob]

    def summary(self) -> str:
        shapes = ", ".join(f"{b.colour} {b.shape}" for b in self.blobs) or "none"
        return f"Text read by OCR:\n{self.text or '(none)'}\n\nShapes detected: {shapes}"


def read_text(image, config: str = "--psm 6") -> str:
    import pytesseract

    return pytesseract.image_to_string(image, config=config).strip()


def colour_name(rgb: np.ndarray) -> str:
    import cv2

    h, s, v = cv2.cvtColor(np.uint8([[rgb]]), cv2.COLOR_RGB2HSV)[0, 0].astype(float)
    if v < 50:
        return "black"
    if s < 40:
        return "white" if v > 200 else "gray"
    hue = h * 2                                          # OpenCV hue is 0..180
    for limit, name in ((15, "red"), (40, "orange"), (70, "yellow"), (165, "green"), (260, "blue"), (330, "purple")):
        if hue < limit:
            return name
    return "red"


def detect_shapes(image) -> list[Blob]:
    """Filled shapes on a plain background: contours of whatever differs from the
    background colour, each named by its polygon's corners (or roundness)."""
    import cv2

    rgb = np.asarray(image.convert("RGB"))
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    background = np.median(border, axis=0)
    mask = (np.abs(rgb.astype(int) - background).sum(axis=2) > 60).astype(np.uint8) * 255
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    min_area = 0.002 * mask.shape[0] * mask.shape[1]
    blobs = []
    for c in contours:
        area = cv2.contourArea(c)
        if area < min_area:
            continue
        peri = cv2.arcLength(c, True)
        corners = len(cv2.approxPolyDP(c, 0.03 * peri, True))
        circularity = 4 * np.pi * area / (peri * peri)
        if corners == 3:
            shape = "triangle"
        elif corners == 4:
            _, _, w, h = cv2.boundingRect(c)
            shape = "square" if 0.85 <= w / h <= 1.18 else "rectangle"
        elif corners == 5:
            shape = "pentagon"
        elif corners == 6 and circularity < 0.88:
            shape = "hexagon"
        elif circularity > 0.8:
            shape = "circle"
        else:
            continue
        inside = np.zeros(mask.shape, np.uint8)
        cv2.drawContours(inside, [c], -1, 255, -1)
        blobs.append(Blob(shape, colour_name(np.median(rgb[inside > 0], axis=0)), float(area)))
    return sorted(blobs, key=lambda b: -b.area)


def look(image, stages=("ocr", "shapes"), tesseract_config: str = "--psm 6") -> Findings:
    """Stage 1: what the configured classical components find in the image."""
    text = read_text(image, tesseract_config) if "ocr" in stages else ""
    blobs = detect_shapes(image) if "shapes" in stages else []
    return Findings(text, blobs)


def answer_by_rule(question: str, found: Findings) -> str | None:
    """The answer when stage 1 holds it outright; None when it takes a text expert."""
    q = question.lower()
    shape = next((s for s in SHAPES if s in q), None)
    colour = next((c for c in COLOURS if re.search(rf"\b{c}\b", q)), None)
    if found.blobs and ("how many" in q or "count" in q):
        hits = [b for b in found.blobs if (not shape or b.shape == shape) and (not colour or b.colour == colour)]
        if shape or colour or "shape" in q:
            return str(len(hits))
    if found.blobs and ("what colour" in q or "what color" in q):
        hits = [b for b in found.blobs if not shape or b.shape == shape]
        return hits[0].colour if hits else None
    if found.blobs and "what shape" in q:
        hits = [b for b in found.blobs if not colour or b.colour == colour]
        return hits[0].shape if hits else None
    if found.text and "total" in q:
        for line in found.text.splitlines():
            if "total" in line.lower() and NUMBER.search(line):
                return NUMBER.findall(line)[-1].replace(",", "")
    if found.text and re.search(r"\b(say|says|written|read|text|word|title)\b", q):
        return " ".join(found.text.split())
    return None
