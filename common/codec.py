"""Decoding Kafka payloads into protobuf events, with a reason when they are bad."""
from __future__ import annotations

import math
import uuid

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message


class BadEvent(ValueError):
    """A payload that cannot be used; its message is the dead-letter reason."""


def decode(payload: bytes | None, cls: type[Message], json_ok: bool = False) -> Message:
    """Protobuf bytes; with `json_ok`, also the message's JSON mapping (a JSON object:
    what a producer without the generated code writes, e.g. kcat). No protobuf message
    of ours starts with "{" (it would be field 15 as a group), so the two never mix."""
    if not payload:
        raise BadEvent(f"empty payload, expected {cls.DESCRIPTOR.name}")
    if json_ok and payload.lstrip()[:1] == b"{":
        try:
            return json_format.Parse(payload.decode("utf-8"), cls())
        except (json_format.ParseError, UnicodeDecodeError, RecursionError) as exc:
            raise BadEvent(f"undecodable {cls.DESCRIPTOR.name} JSON: {str(exc)[:200]}") from None
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
