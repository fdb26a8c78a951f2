"""Expert backends. Importing this package registers every built-in backend."""
from . import document, openai_chat, replay, vision  # noqa: F401  (registration side effect)
from .base import BACKENDS, Answer, BackendError, ExpertBackend, make_backend, register

__all__ = ["BACKENDS", "Answer", "BackendError", "ExpertBackend", "make_backend", "register"]
