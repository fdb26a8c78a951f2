"""Writing an expert catalog (TOML) for a routing data set: one replay expert per model."""
from __future__ import annotations

import json
from pathlib import Path

from common.dataset import RoutingDataset


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, dict):                       # an inline table (e.g. a stage-2 backend)
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(v)


def write_catalog(path: Path, experts: dict[str, dict]) -> Path:
    """experts: name -> fields of ExpertConfig (options as a nested dict)."""
    lines = []
    for name, spec in experts.items():
        lines.append(f"[experts.{json.dumps(name)}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in spec.items() if k != "options"]
        if spec.get("options"):
            lines.append(f"[experts.{json.dumps(name)}.options]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in spec["options"].items()]
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def replay_catalog(path: Path, data: Path, dataset: RoutingDataset, **options) -> Path:
    """The data set's list prices (meta mean_cost) become the catalog's price per call:
    what the router tells the policy before an expert's first answer. The answers' own
    costs still come from the data set's records. Every expert accepts the rows' modalities."""
    modalities = sorted({r.modality for r in dataset.rows} | {"text"})
    return write_catalog(path, {
        name: {"backend": "replay", "premium": name == dataset.premium, "max_concurrency": 32,
               "modalities": modalities, "price_per_call": dataset.prices.get(name, 0.0),
               "options": {"data": str(data), **options}}
        for name in dataset.experts})
