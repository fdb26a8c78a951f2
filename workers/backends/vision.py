"""The two-stage vision pipeline: classical vision first, a text expert only if needed.

Stage 1 reads the image with components that still win where they apply and cost next
to nothing: Tesseract OCR (Debian's tesseract-ocr, through pytesseract) for rendered
text, and OpenCV contour detectors for shapes and their colours. Stage 2 answers the
question over what stage 1 found: by rule when stage 1 already holds the answer (what a
sign says, a receipt's total, how many circles, the colour of the square), otherwise by
a configured text backend given the question and stage 1's findings.

Options: `stages` (list, default ["ocr", "shapes"]), `tesseract_config` (default
"--psm 6"), `stage2` (a table: `backend` and its `options`, e.g. an openai text model;
without one, a question no rule answers fails the call, and the router falls back).
Cost: the catalog's price per call, plus stage 2's when it is called.
"""
from __future__ import annotations

import asyncio

from common.experts import ExpertConfig
from common.media import Part, open_image
from common.vision import Findings, answer_by_rule, look
from proto import events_pb2

from .base import Answer, BackendError, ExpertBackend, TextStage, estimate_tokens, register


@register
class TwoStageVisionBackend(ExpertBackend):
    name = "vision_pipeline"

    def __init__(self, expert: ExpertConfig):
        super().__init__(expert)
        o = expert.options
        self.stages = list(o.get("stages", ["ocr", "shapes"]))
        unknown = [s for s in self.stages if s not in ("ocr", "shapes")]
        if unknown or not self.stages:
            raise ValueError(f"expert {expert.name!r}: options.stages must be a non-empty subset of "
                             f"['ocr', 'shapes'], got {self.stages}")
        self.tesseract_config = o.get("tesseract_config", "--psm 6")
        stage2 = o.get("stage2")
        self.stage2 = TextStage(expert, stage2) if stage2 else None

    async def start(self) -> None:
        if self.stage2:
            await self.stage2.start()

    async def close(self) -> None:
        if self.stage2:
            await self.stage2.close()

    def look(self, part: Part) -> Findings:
        return look(open_image(part, 10**9), self.stages, self.tesseract_config)   # limits: checked by the router

    async def answer(self, request: events_pb2.ExpertRequest, parts=()) -> Answer:
        images = [p for p in parts if p.modality == "image"]
        if not images:
            raise BackendError("the vision pipeline needs an image part")
        found = await asyncio.to_thread(self.look, images[0])
        ruled = answer_by_rule(request.query, found)
        price = self.expert.price(estimate_tokens(request.query), 0)
        if ruled is not None:
            return Answer(ruled, estimate_tokens(request.query), estimate_tokens(ruled), price)
        if self.stage2 is None:
            raise BackendError("no rule answers this question from the image and no stage-2 text expert "
                               "is configured")
        ans = await self.stage2.ask(request, f"{request.query}\n\n{found.summary()}")
        return Answer(ans.text, ans.input_tokens, ans.output_tokens, ans.cost + price)
