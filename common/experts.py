"""Experts are configuration: name, backend, prices, modalities, concurrency.

Loaded from a TOML file with one `[experts.<name>]` table per expert; the backend's own
options sit under `[experts.<name>.options]`.
"""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

from pydantic import BaseModel, Field, field_validator

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")


class ExpertConfig(BaseModel):
    name: str
    backend: str
    modalities: list[str] = Field(default_factory=lambda: ["text"])
    price_per_call: float = Field(default=0.0, ge=0)
    price_per_input_token: float = Field(default=0.0, ge=0)
    price_per_output_token: float = Field(default=0.0, ge=0)
    max_concurrency: int = Field(default=8, ge=1)
    premium: bool = False
    expected_output_tokens: int = Field(default=256, ge=0)    # for the expected-cost filter
    expected_latency_s: float | None = Field(default=None, ge=0)  # for the latency filter; None = unknown
    options: dict = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _valid_name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(f"expert name {v!r} must match {NAME_RE.pattern} (it becomes a Kafka topic name)")
        return v

    def price(self, input_tokens: int, output_tokens: int) -> float:
        return (self.price_per_call + input_tokens * self.price_per_input_token
                + output_tokens * self.price_per_output_token)

    def expected_cost(self, query_chars: int) -> float:
        """What a query of this length should cost here (~4 characters a token)."""
        return self.price(max(1, query_chars // 4), self.expected_output_tokens)


class ExpertCatalog:
    """The configured experts, in a stable order (the policy's arm order)."""

    def __init__(self, experts: list[ExpertConfig]):
        if not experts:
            raise ValueError("no experts configured")
        names = [e.name for e in experts]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate expert names in {names}")
        self._by_name = {e.name: e for e in experts}

    @classmethod
    def from_file(cls, path: str | Path) -> "ExpertCatalog":
        data = tomllib.loads(Path(path).read_text())
        table = data.get("experts")
        if not isinstance(table, dict) or not table:
            raise ValueError(f"{path}: expected one or more [experts.<name>] tables")
        return cls([ExpertConfig(name=name, **spec) for name, spec in table.items()])

    @property
    def names(self) -> list[str]:
        return list(self._by_name)

    def __getitem__(self, name: str) -> ExpertConfig:
        return self._by_name[name]

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def __iter__(self):
        return iter(self._by_name.values())

    @property
    def premium(self) -> ExpertConfig | None:
        return next((e for e in self if e.premium), None)

    def eligible(self, modalities: str | list[str], allowed: list[str] | None = None) -> list[str]:
        """Experts that accept every one of `modalities` (and are `allowed`, when given)."""
        needed = [modalities] if isinstance(modalities, str) else modalities
        return [e.name for e in self if all(m in e.modalities for m in needed) and (not allowed or e.name in allowed)]
