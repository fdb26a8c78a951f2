"""Checks on what callers send, before anything is embedded, logged or dispatched."""
from __future__ import annotations

import math
import re
import uuid

from common.experts import ExpertCatalog
from common.media import MediaError, MediaLimits, Part, check_parts

from bandit.context import MODALITIES
from .errors import InvalidRequest

META_KEY = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
MAX_META_ENTRIES = 32
MAX_META_VALUE = 4096
MAX_TENANT = 128
MAX_HINTS = 8
MAX_HINT_VALUE = 128


def check_query(query: str, max_chars: int, has_parts: bool = False) -> None:
    if (not query or not query.strip()) and not has_parts:
        raise InvalidRequest("query is empty (and there are no parts)")
    if len(query) > max_chars:
        raise InvalidRequest(f"query has {len(query)} characters, the limit is {max_chars}")


def check_timeout_ms(timeout_ms: int, default_ms: int, max_ms: int) -> float:
    """The request's timeout in seconds (0 = the default); a negative or absurd one is the
    caller's mistake, not the router's."""
    if timeout_ms == 0:
        return default_ms / 1000.0
    if not 0 < timeout_ms <= max_ms:
        raise InvalidRequest(f"timeout_ms must be between 1 and {max_ms} (0 = the default, {default_ms}); "
                             f"got {timeout_ms}")
    return timeout_ms / 1000.0


def check_options(options, catalog: ExpertCatalog, query_chars: int = 0,
                  part_modalities: list[str] | None = None) -> tuple[str, list[str]]:
    """Returns (modality, eligible experts) or raises InvalidRequest naming the bad field.
    The modality is options.modality, else the first part's, else text; an eligible
    expert accepts it and every part's modality."""
    part_modalities = list(dict.fromkeys(part_modalities or []))
    modality = options.modality or (part_modalities[0] if part_modalities else "text")
    if modality not in MODALITIES:
        raise InvalidRequest(f"options.modality {modality!r} is not one of {list(MODALITIES)}")
    if part_modalities and modality not in part_modalities + ["text"]:
        raise InvalidRequest(f"options.modality {modality!r} does not match the parts ({', '.join(part_modalities)})")
    if len(options.tenant) > MAX_TENANT or not options.tenant.isprintable():
        raise InvalidRequest(f"options.tenant must be printable and at most {MAX_TENANT} characters")
    if options.HasField("cost_weight") and not (math.isfinite(options.cost_weight) and options.cost_weight >= 0):
        raise InvalidRequest(f"options.cost_weight must be a finite number >= 0, got {options.cost_weight}")
    unknown = [e for e in options.allowed_experts if e not in catalog]
    if unknown:
        raise InvalidRequest(f"unknown expert(s) {unknown}; configured: {catalog.names}")
    check_metadata(options.metadata)
    check_hints(options.hints)
    needed = list(dict.fromkeys([modality, *part_modalities]))
    eligible = catalog.eligible(needed, list(options.allowed_experts))
    if not eligible:
        what = f"modality {modality!r}" if needed == [modality] else f"the parts' modalities {needed}"
        raise InvalidRequest(f"no configured expert accepts {what}"
                             + (f" among {list(options.allowed_experts)}" if options.allowed_experts else ""))
    for field in ("max_cost", "max_latency_s"):
        if options.HasField(field) and not (math.isfinite(getattr(options, field)) and getattr(options, field) >= 0):
            raise InvalidRequest(f"options.{field} must be a finite number >= 0, got {getattr(options, field)}")
    if options.HasField("max_cost"):
        eligible = [e for e in eligible if catalog[e].expected_cost(query_chars) <= options.max_cost]
    if options.HasField("max_latency_s"):
        eligible = [e for e in eligible if catalog[e].expected_latency_s is None
                    or catalog[e].expected_latency_s <= options.max_latency_s]
    if not eligible:
        raise InvalidRequest("no eligible expert meets options.max_cost / options.max_latency_s for this query")
    return modality, eligible


def check_metadata(metadata) -> None:
    if len(metadata) > MAX_META_ENTRIES:
        raise InvalidRequest(f"options.metadata has {len(metadata)} entries, the limit is {MAX_META_ENTRIES}")
    for key, value in metadata.items():
        if not META_KEY.match(key):
            raise InvalidRequest(f"options.metadata key {key[:80]!r} must match {META_KEY.pattern}")
        if len(value) > MAX_META_VALUE or "\x00" in value:
            raise InvalidRequest(f"options.metadata[{key!r}] must be at most {MAX_META_VALUE} "
                                 "characters without NUL bytes")


def check_hints(hints) -> None:
    """Hints become context features: a few short printable categories, not free text."""
    if len(hints) > MAX_HINTS:
        raise InvalidRequest(f"options.hints has {len(hints)} entries, the limit is {MAX_HINTS}")
    for key, value in hints.items():
        if not META_KEY.match(key):
            raise InvalidRequest(f"options.hints key {key[:80]!r} must match {META_KEY.pattern}")
        if not value or len(value) > MAX_HINT_VALUE or not value.isprintable():
            raise InvalidRequest(f"options.hints[{key!r}] must be 1 to {MAX_HINT_VALUE} printable characters")


def check_feedback(decision_id: str, quality: float, cost: float | None) -> str:
    try:
        decision_id = str(uuid.UUID(decision_id))
    except ValueError:
        raise InvalidRequest(f"decision_id {decision_id[:80]!r} is not a UUID") from None
    if not (math.isfinite(quality) and 0.0 <= quality <= 1.0):
        raise InvalidRequest(f"quality must be in [0, 1], got {quality}")
    if cost is not None and not (math.isfinite(cost) and cost >= 0):
        raise InvalidRequest(f"cost must be a finite number >= 0, got {cost}")
    return decision_id


def check_content(parts, limits: MediaLimits) -> list[Part]:
    """The request's ContentParts, checked (common/media.py); a bad one is INVALID_ARGUMENT naming it."""
    try:
        return check_parts(((p.media_type, p.data, p.name) for p in parts), limits)
    except MediaError as exc:
        raise InvalidRequest(str(exc)) from None
