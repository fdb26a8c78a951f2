"""Decoding Kafka payloads into protobuf events, with a reason when they are bad."""
from __future__ import annotations

import math
import uuid

from google.protobuf.message import DecodeError, Message


class BadEvent(ValueError):
    """A payload that cannot be used; its message is the dead-letter reason."""


def decode(payload: bytes | None, cls: type[Message]) -> Message:
    if not payload:
        raise BadEvent(f"empty payload, expected {cls.DESCRIPTOR.name}")
    msg = cls()
    try:
        msg.ParseFromString(payload)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise BadEvent(f"undecodable {cls.DESCRIPTOR.name}: {exc}") from None
    return msg


def require_uuid(value: str, field: str = "decision_id") -> str:
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        raise BadEvent(f"{field} {value[:80]!r} is not a UUID") from None


def require_finite(value: float, field: str, lo: float | None = None, hi: float | None = None) -> float:
    if not math.isfinite(value):
        raise BadEvent(f"{field} must be finite, got {value}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise BadEvent(f"{field} must be in [{lo}, {hi}], got {value}")
    return value
