"""The document expert: a PDF's text layer, then a text expert answers over it.

Options: `stage2` (required: a table with `backend` and its `options`), `max_chars`
(how much of the text the text expert is given, default 12000). A scanned document (no
text layer) fails the call with that reason, so the router falls back.
Cost: the catalog's price per call plus the text expert's.
"""
from __future__ import annotations

import asyncio

from bandit.media_features import document_text
from common.experts import ExpertConfig
from proto import events_pb2

from .base import Answer, BackendError, ExpertBackend, TextStage, estimate_tokens, register


@register
class DocumentBackend(ExpertBackend):
    name = "document"

    def __init__(self, expert: ExpertConfig):
        super().__init__(expert)
        o = self.require("stage2")
        self.max_chars = int(o.get("max_chars", 12_000))
        self.stage2 = TextStage(expert, o["stage2"])

    async def start(self) -> None:
        await self.stage2.start()

    async def close(self) -> None:
        await self.stage2.close()

    async def answer(self, request: events_pb2.ExpertRequest, parts=()) -> Answer:
        docs = [p for p in parts if p.modality == "document"]
        if not docs:
            raise BackendError("the document expert needs a document part")
        texts = await asyncio.gather(*(asyncio.to_thread(document_text, d, 50, self.max_chars) for d in docs))
        body = "\n\n".join(t for t in texts if t)[: self.max_chars]
        if not body:
            raise BackendError("the document has no text layer (scanned?)")
        ans = await self.stage2.ask(request, f"{request.query}\n\nThe document:\n{body}")
        return Answer(ans.text, ans.input_tokens, ans.output_tokens,
                      ans.cost + self.expert.price(estimate_tokens(request.query), 0))
