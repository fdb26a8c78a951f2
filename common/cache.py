"""The per-machine cache folder (broker jars, the Python environment, embeddings)."""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    d = Path(os.environ.get("BR_CACHE_DIR", Path.home() / ".cache" / "bandit-router"))
    d.mkdir(parents=True, exist_ok=True)
    return d
