"""Routing data sets: per query, every expert's quality, cost and latency.

Format (data/README.md): `<name>.jsonl` or `<name>.jsonl.gz`, one query a line, and
`<name>.meta.json` beside it naming the experts, the premium expert and the cost unit.
A missing or unreadable file is a DatasetError naming it; bad rows raise a DatasetError
naming the line, unless `skip_bad=True`, which skips and counts them.
"""
from __future__ import annotations

import gzip
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .media import MEDIA_TYPES, MediaError, MediaLimits, Part, check_parts


class DatasetError(ValueError):
    pass


# The routing data set the repository carries (the demo's and the stack's default).
BUNDLED = Path(__file__).resolve().parent.parent / "data" / "llmrouter_9models.jsonl.gz"
SUFFIXES = (".jsonl.gz", ".jsonl")
HOW = ("pass a routing data set (<name>.jsonl or <name>.jsonl.gz with <name>.meta.json beside it), "
       f"e.g. the bundled {BUNDLED.relative_to(BUNDLED.parent.parent)}")


def meta_path(path: Path) -> Path:
    """`<name>.meta.json` beside `<name>.jsonl` or `<name>.jsonl.gz`."""
    name = next((path.name.removesuffix(s) for s in SUFFIXES if path.name.endswith(s)), path.stem)
    return path.with_name(name + ".meta.json")


def _open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.name.endswith(".gz") else path.open(encoding="utf-8")


@dataclass(frozen=True)
class Outcome:
    quality: float
    cost: float
    latency_s: float | None


@dataclass(frozen=True)
class MediaFile:
    path: str                        # relative to the .jsonl's folder
    media_type: str


@dataclass(frozen=True)
class Row:
    id: str
    prompt: str
    task: str
    split: str | None
    modality: str
    outcomes: dict[str, Outcome]
    media: tuple[MediaFile, ...] = ()


@dataclass
class RoutingDataset:
    name: str
    premium: str
    cost_unit: str
    experts: list[str]
    rows: list[Row]
    skipped: dict[str, int] = field(default_factory=dict)   # reason -> count
    prices: dict[str, float] = field(default_factory=dict)  # the meta's mean_cost: a list price per call
    root: Path = Path(".")                                   # where rows' media paths start

    def __post_init__(self) -> None:
        self._by_id = {r.id: r for r in self.rows}
        self._by_prompt = {r.prompt: r for r in self.rows}

    @classmethod
    def load(cls, path: str | Path, skip_bad: bool = False, limit: int | None = None) -> "RoutingDataset":
        path = Path(path)
        if not path.is_file():
            raise DatasetError(f"{path}: no such file; {HOW}")
        meta_file = meta_path(path)
        if not meta_file.is_file():
            raise DatasetError(f"{path}: meta file {meta_file.name} is missing beside it; {HOW}")
        try:
            meta = json.loads(meta_file.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DatasetError(f"{meta_file}: unreadable meta file ({exc})") from None
        if not isinstance(meta, dict):
            raise DatasetError(f"{meta_file}: expected a JSON object")
        experts = list(meta.get("experts") or {})
        if not experts:
            raise DatasetError(f"{meta_file}: no experts listed")
        premium = meta.get("premium", "")
        if premium not in experts:
            raise DatasetError(f"{meta_file}: premium expert {premium!r} is not among {experts}")
        rows, skipped = [], {}
        try:
            with _open_text(path) as fh:
                for lineno, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        rows.append(_parse_row(line, experts))
                    except DatasetError as exc:
                        if not skip_bad:
                            raise DatasetError(f"{path.name} line {lineno}: {exc}") from None
                        reason = str(exc).split(":")[0]
                        skipped[reason] = skipped.get(reason, 0) + 1
                    if limit and len(rows) >= limit:
                        break
        except (OSError, EOFError, UnicodeDecodeError) as exc:   # gzip.BadGzipFile is an OSError
            raise DatasetError(f"{path}: unreadable ({exc}); {HOW}") from None
        return cls(meta.get("name", path.stem), premium, meta.get("cost_unit", ""), experts, rows, skipped,
                   _list_prices(meta, meta_file), path.parent)

    @classmethod
    def load_or_exit(cls, path: str | Path, **kw) -> "RoutingDataset":
        """For command-line tools: a bad data file is one line naming it, not a traceback."""
        try:
            return cls.load(path, **kw)
        except DatasetError as exc:
            raise SystemExit(f"error: {exc}") from None

    def find(self, item_id: str | None, prompt: str) -> Row | None:
        return self._by_id.get(item_id) if item_id else self._by_prompt.get(prompt)

    def outcome_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """quality[n, k] and cost[n, k], experts in `self.experts` order."""
        q = np.array([[r.outcomes[e].quality for e in self.experts] for r in self.rows])
        c = np.array([[r.outcomes[e].cost for e in self.experts] for r in self.rows])
        return q, c

    def media_parts(self, row: Row) -> list[Part]:
        """A row's media files, read and checked like a request's parts (DatasetError naming them)."""
        try:
            return check_parts(((m.media_type, (self.root / m.path).read_bytes(), m.path) for m in row.media),
                               MediaLimits(max_parts=max(8, len(row.media))))
        except (OSError, MediaError) as exc:
            raise DatasetError(f"row {row.id!r}: media: {exc}") from None

    def split(self, name: str) -> list[Row]:
        return [r for r in self.rows if r.split == name]

    def only(self, experts: list[str]) -> "RoutingDataset":
        """The same queries with only `experts`' outcomes: the catalog a deployment would hold.
        The premium stays if kept; if not, the dearest kept expert stands in (list price, else
        mean cost; then mean quality), as the one an always-premium deployment of that
        catalog would call."""
        unknown = [e for e in experts if e not in self.experts]
        if unknown:
            raise DatasetError(f"unknown experts {unknown}; the set has {self.experts}")
        keep = [e for e in self.experts if e in experts]          # the set's order, each once
        premium = self.premium
        if premium not in keep:
            q, c = self.outcome_arrays()
            mean = {e: (self.prices.get(e, c[:, k].mean()), q[:, k].mean()) for k, e in enumerate(self.experts)}
            premium = max(keep, key=mean.__getitem__)
        rows = [replace(r, outcomes={e: r.outcomes[e] for e in keep}) for r in self.rows]
        return RoutingDataset(self.name, premium, self.cost_unit, keep, rows, dict(self.skipped),
                              {e: v for e, v in self.prices.items() if e in keep}, self.root)


def _list_prices(meta: dict, meta_file: Path) -> dict[str, float]:
    """Each expert's `mean_cost` from the meta file: what a catalog would list as its price
    per call, known before the first call. Empty when the meta lists none."""
    raw = {e: spec.get("mean_cost") for e, spec in meta["experts"].items() if isinstance(spec, dict)}
    raw = {e: v for e, v in raw.items() if v is not None}
    for e, v in raw.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise DatasetError(f"{meta_file}: mean_cost of {e!r} must be a number >= 0, got {v!r}")
    return {e: float(v) for e, v in raw.items()}


def _parse_row(line: str, experts: list[str]) -> Row:
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"invalid JSON: {exc}") from None
    for key in ("id", "prompt", "outcomes"):
        if key not in raw:
            raise DatasetError(f"missing field: {key!r}")
    if not isinstance(raw["prompt"], str) or not raw["prompt"]:
        raise DatasetError(f"empty prompt: row {raw['id']!r}")
    outcomes = {}
    for name in experts:
        o = raw["outcomes"].get(name)
        if o is None:
            raise DatasetError(f"missing expert: row {raw['id']!r} has no outcome for {name!r}")
        q, c, lat = o.get("quality"), o.get("cost"), o.get("latency_s")
        for label, v in (("quality", q), ("cost", c)):
            if not isinstance(v, (int, float)) or not math.isfinite(v):
                raise DatasetError(f"bad {label}: row {raw['id']!r} expert {name!r} has {label} {v!r}")
        if not 0.0 <= q <= 1.0 or c < 0:
            raise DatasetError(f"out of range: row {raw['id']!r} expert {name!r} quality {q} cost {c}")
        outcomes[name] = Outcome(float(q), float(c), float(lat) if isinstance(lat, (int, float)) else None)
    unknown = set(raw["outcomes"]) - set(experts)
    if unknown:
        raise DatasetError(f"unknown expert: row {raw['id']!r} has outcomes for {sorted(unknown)} "
                           "not in the meta file")
    media = _parse_media(raw)
    modality = raw.get("modality") or (MEDIA_TYPES[media[0].media_type] if media else "text")
    return Row(str(raw["id"]), raw["prompt"], raw.get("task", ""), raw.get("split"), modality, outcomes, media)


def _parse_media(raw: dict) -> tuple[MediaFile, ...]:
    media = raw.get("media") or []
    if not isinstance(media, list):
        raise DatasetError(f"bad media: row {raw['id']!r}: expected a list of {{path, media_type}}")
    out = []
    for m in media:
        path = m.get("path") if isinstance(m, dict) else None
        mt = m.get("media_type") if isinstance(m, dict) else None
        if not isinstance(path, str) or not path or Path(path).is_absolute() or ".." in Path(path).parts:
            raise DatasetError(f"bad media: row {raw['id']!r}: path {path!r} must be relative, inside the set's folder")
        if mt not in MEDIA_TYPES:
            raise DatasetError(f"bad media: row {raw['id']!r}: media_type {mt!r} is not one of {sorted(MEDIA_TYPES)}")
        out.append(MediaFile(path, mt))
    return tuple(out)
