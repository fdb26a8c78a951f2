"""Any OpenAI-compatible chat-completions endpoint: vLLM, Ollama, llama.cpp server, a hosted API.

Options: `base_url`, `model`, `api_key_env` (name of the variable holding the key;
default OPENAI_API_KEY), `max_tokens`, `temperature`, `timeout_s`, `max_retries` (the
client's own retries, default 0: the worker retries transient errors itself, within the
request's deadline), `system_prompt`. Each call's timeout is the least of `timeout_s` and
the time left before the request's deadline. Cost is the catalog's price per call and per input/output token,
applied to the token counts the endpoint reports (estimated when it reports none).

Content parts go as the OpenAI API takes them: images as `image_url` data URIs, WAV
audio as `input_audio`, a document as its text layer after the question (a premium
vision model is this backend with a vision model and `modalities` including image).
"""
from __future__ import annotations

import base64
import os

import openai

from bandit.media_features import document_text
from common.kafka import now_ms

from proto import events_pb2

from .base import Answer, BackendError, ExpertBackend, estimate_tokens, register


@register
class OpenAIChatBackend(ExpertBackend):
    name = "openai"

    def __init__(self, expert):
        super().__init__(expert)
        o = self.require("base_url", "model")
        self.model = o["model"]
        self.max_tokens = int(o.get("max_tokens", 512))
        self.temperature = float(o.get("temperature", 0.0))
        self.system_prompt = o.get("system_prompt", "")
        self.client = openai.AsyncOpenAI(
            base_url=o["base_url"], api_key=os.environ.get(o.get("api_key_env", "OPENAI_API_KEY"), "none"),
            timeout=float(o.get("timeout_s", 60.0)), max_retries=int(o.get("max_retries", 0)))
        self.timeout_s = float(o.get("timeout_s", 60.0))

    async def close(self) -> None:
        await self.client.close()

    def _messages(self, request: events_pb2.ExpertRequest, parts) -> list[dict]:
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        messages.append({"role": "user", "content": user_content(request.query, parts)})
        return messages

    def _timeout(self, request: events_pb2.ExpertRequest) -> float:
        """The call's timeout: never past the request's deadline (nobody waits longer)."""
        if not request.deadline_ms:
            return self.timeout_s
        left = (request.deadline_ms - now_ms()) / 1000.0
        if left <= 0:
            raise BackendError("the request's deadline passed before the call")
        return min(self.timeout_s, left)

    def _answer(self, request: events_pb2.ExpertRequest, text: str, usage) -> Answer:
        tin = usage.prompt_tokens if usage else estimate_tokens(request.query)
        tout = usage.completion_tokens if usage else estimate_tokens(text)
        return Answer(text, tin, tout, self.expert.price(tin, tout))

    async def answer(self, request: events_pb2.ExpertRequest, parts=()) -> Answer:
        try:
            resp = await self.client.chat.completions.create(
                model=self.model, messages=self._messages(request, parts), max_tokens=self.max_tokens,
                temperature=self.temperature, timeout=self._timeout(request))
        except openai.OpenAIError as exc:
            raise backend_error(exc) from exc
        if not resp.choices:
            raise BackendError("endpoint returned no choices")
        return self._answer(request, resp.choices[0].message.content or "", resp.usage)

    async def stream(self, request: events_pb2.ExpertRequest, parts=()):
        """Tokens as the endpoint streams them; usage from its last chunk where it reports one."""
        pieces, usage = [], None
        try:
            chunks = await self.client.chat.completions.create(
                model=self.model, messages=self._messages(request, parts), max_tokens=self.max_tokens,
                temperature=self.temperature, stream=True, stream_options={"include_usage": True},
                timeout=self._timeout(request))
            async with chunks:
                async for chunk in chunks:
                    usage = chunk.usage or usage
                    delta = chunk.choices[0].delta.content if chunk.choices else None
                    if delta:
                        pieces.append(delta)
                        yield delta
        except openai.OpenAIError as exc:
            raise backend_error(exc) from exc
        yield self._answer(request, "".join(pieces), usage)


def backend_error(exc: openai.OpenAIError) -> BackendError:
    """Connection failures, timeouts, 429 and 5xx are worth another try; the rest is not."""
    transient = (openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError)
    return BackendError(f"{type(exc).__name__}: {exc}", retryable=isinstance(exc, transient))


def user_content(query: str, parts) -> str | list[dict]:
    """The user message: plain text, or OpenAI content parts when the request has any."""
    if not parts:
        return query
    text, content = query, []
    for p in parts:
        b64 = base64.b64encode(p.data).decode()
        if p.modality == "image":
            content.append({"type": "image_url", "image_url": {"url": f"data:{p.media_type};base64,{b64}"}})
        elif p.modality == "audio":
            content.append({"type": "input_audio", "input_audio": {"data": b64, "format": p.media_type.split("/")[1]}})
        elif p.modality == "document":
            text += f"\n\n{p.name or 'The document'}:\n{document_text(p)}"
    return [{"type": "text", "text": text}, *content]
