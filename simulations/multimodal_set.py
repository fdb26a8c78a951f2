"""`python -m simulations.multimodal_set --out DIR [--rows N]`: a real multimodal routing set.

Images whose true answer is known, drawn here (simulations/media_render.py), each with a
question: receipts ("what is the total?") and signs ("what does the sign say?"), scenes
of shapes ("how many circles?", "what colour is the square?"), bar charts ("which bar is
the tallest?") and colour fields ("is this image mostly warm or cool?"). Some are made
hard the way real photos are (small print, blur, a tilt, shapes that touch).

The cheap experts' outcomes come from running the real pipelines on every image and
scoring their answers against the truth: `ocr_pipeline` (Tesseract, then the rules of
workers/backends/vision.py) and `shape_detector` (OpenCV contours, then the same rules),
with the time each took. The premium vision model cannot run here: `premium_vision` is a
stand-in whose outcome is drawn at a stated accuracy per kind of image, at a stated price
and latency, and the meta file says so.

Writes DIR/multimodal.jsonl, DIR/multimodal.meta.json and DIR/images/*.png.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from .media_render import RGB, png, shapes_image, text_image

KINDS = {"receipt": 0.25, "sign": 0.20, "shapes": 0.30, "chart": 0.15, "field": 0.10}
PIPELINES = {"ocr_pipeline": ("ocr",), "shape_detector": ("shapes",)}
PRICES = {"ocr_pipeline": 0.0002, "shape_detector": 0.0001, "premium_vision": 0.004}    # USD per call
PREMIUM = "premium_vision"
PREMIUM_ACCURACY = {"receipt": 0.92, "sign": 0.95, "shapes": 0.85, "chart": 0.88, "field": 0.90}
PREMIUM_LATENCY_S = 2.5
SHOPS = ["CORNER CAFE", "CITY MARKET", "BOOK NOOK", "FRESH BAKERY", "GREEN GROCER", "TECH DEPOT", "PIZZA PLACE"]
ITEMS = ["Latte", "Bagel", "Apples", "Bread", "Cable", "Pen", "Soup", "Salad", "Tea", "Milk", "Eggs", "Rice"]
SIGNS = ["NO PARKING", "EXIT", "OPEN", "CLOSED", "PUSH", "PULL", "STOP", "KEEP OUT", "PLATFORM 4", "WET FLOOR",
         "FIRE EXIT", "STAFF ONLY", "BUS STOP", "ONE WAY", "TOILETS", "CAFE", "PHARMACY", "HOTEL"]
SHAPE_KINDS = ["circle", "square", "triangle", "hexagon"]
SHAPE_COLOURS = ["red", "blue", "green", "yellow", "purple", "orange"]


def normalise(answer: str | None) -> str:
    return re.sub(r"[^a-z0-9.]+", " ", (answer or "").lower()).strip()


def correct(answer: str | None, truth: str) -> bool:
    a, t = normalise(answer), normalise(truth)
    try:
        return abs(float(a) - float(t)) < 1e-6
    except ValueError:
        return a == t and a != ""


def _degrade(data: bytes, rnd: random.Random) -> bytes:
    """A photo's troubles: a tilt, blur, shrinking (each sometimes)."""
    from PIL import Image, ImageFilter

    image = Image.open(io.BytesIO(data)).convert("RGB")
    if rnd.random() < 0.5:
        image = image.rotate(rnd.uniform(-8, 8), expand=True, fillcolor="white")
    if rnd.random() < 0.5:
        image = image.filter(ImageFilter.GaussianBlur(rnd.uniform(1.5, 3.0)))
    if rnd.random() < 0.5:
        image = image.resize((image.width // 3, image.height // 3))
    return png(image)


def make_item(kind: str, rnd: random.Random) -> tuple[bytes, str, str]:
    """(PNG, question, true answer) of one kind."""
    hard = rnd.random() < 0.25
    if kind == "receipt":
        items = [(rnd.choice(ITEMS), rnd.randint(100, 2500) / 100) for _ in range(rnd.randint(2, 4))]
        total = f"{sum(p for _, p in items):.2f}"
        lines = [rnd.choice(SHOPS)] + [f"{n} {p:.2f}" for n, p in items] + [f"TOTAL {total}"]
        data = text_image(lines, size=rnd.choice([28, 32, 36]))
        question, truth = rnd.choice(["What is the total on this receipt?", "How much is the total?",
                                      "What total does the receipt show?"]), total
    elif kind == "sign":
        text = rnd.choice(SIGNS)
        ink, ground = rnd.choice([("black", "white"), ("white", (200, 30, 30)), ("white", (20, 90, 40)),
                                  ("black", (250, 210, 40))])
        data = text_image([text], size=rnd.choice([48, 56, 64]), width=520, background=ground, ink=ink)
        question, truth = rnd.choice(["What does the sign say?", "What is written on the sign?",
                                      "Read the text on this sign."]), text
    elif kind == "shapes":
        n = rnd.randint(1, 5)
        placed, tries = [], 0
        while len(placed) < n and tries < 200:
            tries += 1
            r = rnd.randint(28, 50)
            x, y = rnd.randint(r + 5, 480 - r - 5), rnd.randint(r + 5, 360 - r - 5)
            gap = -10 if hard else 12                    # hard scenes: shapes may touch
            if all((x - a) ** 2 + (y - b) ** 2 > (r + c + gap) ** 2 for _, _, (a, b, c) in placed):
                placed.append((rnd.choice(SHAPE_KINDS), rnd.choice(SHAPE_COLOURS), (x, y, r)))
        data = shapes_image(placed)
        target = rnd.choice(placed)
        form = rnd.randrange(3)
        if form == 0:
            question = f"How many {target[0]}s are there?"
            truth = str(sum(s == target[0] for s, _, _ in placed))
        elif form == 1 and sum(s == target[0] for s, _, _ in placed) == 1:
            question, truth = f"What colour is the {target[0]}?", target[1]
        elif sum(c == target[1] for _, c, _ in placed) == 1:
            question, truth = f"What shape is the {target[1]} object?", target[0]
        else:
            question, truth = "How many shapes are there?", str(len(placed))
        return data, question, truth
    elif kind == "chart":
        data, question, truth = _chart(rnd)
    else:
        data, question, truth = _field(rnd)
    if hard:
        data = _degrade(data, rnd)
    return data, question, truth


def _chart(rnd: random.Random) -> tuple[bytes, str, str]:
    from PIL import Image, ImageDraw, ImageFont

    labels = rnd.sample("ABCDEFGH", rnd.randint(3, 5))
    values = rnd.sample(range(2, 20), len(labels))
    image = Image.new("RGB", (480, 360), "white")
    draw, font = ImageDraw.Draw(image), ImageFont.load_default(size=22)
    colour = RGB[rnd.choice(["blue", "green", "orange", "purple"])]
    for i, (label, v) in enumerate(zip(labels, values)):
        x = 40 + i * 85
        draw.rectangle((x, 320 - v * 14, x + 50, 320), fill=colour)
        draw.text((x + 15, 325), label, fill="black", font=font)
    draw.line((30, 320, 460, 320), fill="black", width=2)
    if rnd.random() < 0.5:
        return png(image), "Which bar is the tallest?", labels[values.index(max(values))]
    return png(image), "Which bar is the shortest?", labels[values.index(min(values))]


def _field(rnd: random.Random) -> tuple[bytes, str, str]:
    """A smooth field of colour with noise: warm (reds, oranges) or cool (blues, greens)."""
    import numpy as np

    warm = rnd.random() < 0.5
    g = np.random.default_rng(rnd.randrange(2**32))
    base = np.array([210, 110, 40] if warm else [40, 120, 200], dtype=float)
    yy, xx = np.mgrid[0:240, 0:320]
    field = base + 40 * np.sin(xx[..., None] / g.uniform(15, 60) + g.uniform(0, 6)) + g.normal(0, 20, (240, 320, 3))
    from PIL import Image

    image = Image.fromarray(np.clip(field, 0, 255).astype(np.uint8))
    return png(image), "Is this image mostly warm or cool in colour?", "warm" if warm else "cool"


def outcomes(job: tuple[str, str, str]) -> dict:
    """Run the real pipelines on one image and score them; draw the premium stand-in."""
    from PIL import Image

    from common.vision import answer_by_rule, look

    path, question, truth = job
    image = Image.open(path).convert("RGB")
    out = {}
    for expert, stages in PIPELINES.items():
        t0 = time.monotonic()
        answer = answer_by_rule(question, look(image, stages))
        out[expert] = {"quality": float(correct(answer, truth)), "cost": PRICES[expert],
                       "latency_s": round(time.monotonic() - t0, 4), "answer": answer}
    return out


def build(out: Path, rows: int, seed: int = 0, jobs: int | None = None, log=print) -> Path:
    rnd = random.Random(seed)
    (out / "images").mkdir(parents=True, exist_ok=True)
    kinds = [k for k, share in KINDS.items() for _ in range(round(share * rows))][:rows]
    while len(kinds) < rows:
        kinds.append("shapes")
    rnd.shuffle(kinds)
    items = []
    for i, kind in enumerate(kinds):
        data, question, truth = make_item(kind, rnd)
        path = out / "images" / f"{i:05d}.png"
        path.write_bytes(data)
        items.append((kind, f"images/{path.name}", question, truth))
    log(f"drew {rows} images; running the pipelines on each (Tesseract, OpenCV)")
    t0 = time.monotonic()
    with ProcessPoolExecutor(jobs or os.cpu_count() or 1) as pool:
        results = list(pool.map(outcomes, [(str(out / p), q, t) for _, p, q, t in items],
                                chunksize=8))
    log(f"pipelines done ({time.monotonic() - t0:.0f}s)")
    premium_rnd = random.Random(seed + 1)
    lines = []
    for i, ((kind, path, question, truth), res) in enumerate(zip(items, results)):
        res[PREMIUM] = {"quality": float(premium_rnd.random() < PREMIUM_ACCURACY[kind]), "cost": PRICES[PREMIUM],
                        "latency_s": PREMIUM_LATENCY_S}
        answers = {e: r.pop("answer", None) for e, r in res.items()}
        lines.append(json.dumps({"id": f"mm/{i}", "prompt": question, "task": kind, "answer": truth,
                                 "split": "train" if i < int(0.8 * rows) else "test", "modality": "image",
                                 "media": [{"path": path, "media_type": "image/png"}],
                                 "pipeline_answers": answers, "outcomes": res}))
    jsonl = out / "multimodal.jsonl"
    jsonl.write_text("\n".join(lines) + "\n")
    experts = {}
    for e in [*PIPELINES, PREMIUM]:
        qs = [json.loads(line)["outcomes"][e]["quality"] for line in lines]
        experts[e] = {"mean_quality": round(sum(qs) / len(qs), 4), "mean_cost": PRICES[e],
                      "pipeline": {"ocr_pipeline": "Tesseract OCR + rules", "shape_detector": "OpenCV contours + rules"}
                      .get(e, "STAND-IN: no premium vision model runs here; quality drawn at the stated accuracy")}
    experts[PREMIUM]["stated_accuracy"] = PREMIUM_ACCURACY
    (out / "multimodal.meta.json").write_text(json.dumps({
        "name": "multimodal", "cost_unit": "usd", "premium": PREMIUM, "rows": rows,
        "source": "generated by simulations.multimodal_set (seed %d)" % seed,
        "cost_note": "pipelines: list price per call (CPU); premium_vision: a stand-in at a stated price",
        "kinds": KINDS, "experts": experts}, indent=1))
    by_kind = {}
    for line in lines:
        r = json.loads(line)
        by_kind.setdefault(r["task"], []).append({e: o["quality"] for e, o in r["outcomes"].items()})
    for kind, qs in by_kind.items():
        log(f"  {kind:8s} {len(qs):5d} rows  " + "  ".join(
            f"{e} {sum(q[e] for q in qs) / len(qs):.2f}" for e in qs[0]))
    return jsonl


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--rows", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=None, help="processes running the pipelines (default: one per CPU)")
    args = p.parse_args(argv)
    if args.rows < 10:
        raise SystemExit("--rows must be >= 10")
    print(f"wrote {build(args.out, args.rows, args.seed, args.jobs)}")


if __name__ == "__main__":
    main()
