"""Expert backends: what a worker calls to answer a request. One class and one registry line each."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import AsyncIterator, Sequence

from common.experts import ExpertConfig
from common.media import Part
from proto import events_pb2


class BackendError(Exception):
    """The expert could not answer; the message becomes the result's error. `retryable`:
    a transient failure (connection, overload, 5xx) the worker may try again within the
    request's deadline."""

    def __init__(self, message: str, retryable: bool = False):
        super().__init__(message)
        self.retryable = retryable


@dataclass
class Answer:
    text: str
    input_tokens: int
    output_tokens: int
    cost: float


class ExpertBackend(ABC):
    name: str

    def __init__(self, expert: ExpertConfig):
        self.expert = expert

    def require(self, *keys: str) -> dict:
        """The expert's backend options, after checking that `keys` are set."""
        missing = [k for k in keys if not self.expert.options.get(k)]
        if missing:
            raise ValueError(f"expert {self.expert.name!r}: {self.name} backend needs "
                             + ", ".join(f"options.{k}" for k in missing))
        return self.expert.options

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    @abstractmethod
    async def answer(self, request: events_pb2.ExpertRequest, parts: Sequence[Part] = ()) -> Answer:
        """`parts`: the request's images, documents and audio, read back from the claim check."""

    async def stream(self, request: events_pb2.ExpertRequest,
                     parts: Sequence[Part] = ()) -> AsyncIterator[str | Answer]:
        """The answer's text in pieces as the expert writes them, then the whole Answer last.
        A backend whose expert cannot stream keeps this: one piece, the whole answer."""
        yield await self.answer(request, parts)


BACKENDS: dict[str, type[ExpertBackend]] = {}


def register(cls: type[ExpertBackend]) -> type[ExpertBackend]:
    if cls.name in BACKENDS:
        raise ValueError(f"backend {cls.name!r} registered twice")
    BACKENDS[cls.name] = cls
    return cls


def make_backend(expert: ExpertConfig) -> ExpertBackend:
    try:
        cls = BACKENDS[expert.backend]
    except KeyError:
        raise ValueError(f"expert {expert.name!r}: unknown backend {expert.backend!r}; "
                         f"registered: {sorted(BACKENDS)}") from None
    return cls(expert)


class TextStage:
    """A pipeline's second stage: any configured text backend (`stage2`: a table with
    `backend` and its `options`), asked the question over what the first stage extracted."""

    def __init__(self, owner: ExpertConfig, spec: dict):
        self.backend = make_backend(ExpertConfig(name=f"{owner.name}.stage2", **spec))

    async def start(self) -> None:
        await self.backend.start()

    async def close(self) -> None:
        await self.backend.close()

    async def ask(self, request: events_pb2.ExpertRequest, query: str) -> Answer:
        asked = events_pb2.ExpertRequest()
        asked.CopyFrom(request)
        del asked.parts[:]                    # stage 1 has read them; the text stage gets words
        asked.query = query
        return await self.backend.answer(asked)


async def collect(pieces: AsyncIterator[str | Answer]) -> Answer:
    """The Answer at the end of a stream (for backends that implement stream() only)."""
    answer = None
    async for piece in pieces:
        answer = piece
    if not isinstance(answer, Answer):
        raise BackendError("the expert's stream ended without an answer")
    return answer


def estimate_tokens(text: str) -> int:
    """~4 characters a token: the estimate the routing data sets use too."""
    return max(1, len(text) // 4)
