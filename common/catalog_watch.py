"""Live reload of the expert catalog file, for routers and workers.

Adding, removing or repricing an expert is an edit of BR_EXPERTS_FILE (a mounted
ConfigMap, a compose volume): every process polls the file and applies a new version
without a restart. A file that does not parse or that the process cannot apply is
logged and counted, and the last good catalog stays in force.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path
from typing import Awaitable, Callable

from prometheus_client import Counter

from .experts import ExpertCatalog
from .lifecycle import cancel_task

log = logging.getLogger(__name__)

RELOADS = Counter("catalog_reloads_total", "Expert catalog reloads by outcome", ["outcome"])


class CatalogWatcher:
    def __init__(self, path: Path, interval_s: float, apply: Callable[[ExpertCatalog], Awaitable[None]]):
        self.path = Path(path)
        self.interval_s = interval_s
        self.apply = apply
        self._digest = self._read_digest()
        self._task: asyncio.Task | None = None

    def _read_digest(self) -> str:
        try:
            return hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            return ""

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="catalog-watch")

    async def stop(self) -> None:
        await cancel_task(self._task)

    async def check(self) -> bool:
        """Apply the file if it changed since the last good (or rejected) version; True if applied."""
        digest = self._read_digest()
        if not digest or digest == self._digest:
            return False
        self._digest = digest            # a bad version is reported once, not every poll
        try:
            catalog = ExpertCatalog.from_file(self.path)
            await self.apply(catalog)
        except Exception as exc:
            RELOADS.labels("rejected").inc()
            log.error("expert catalog %s not applied, keeping the previous one: %s", self.path, exc)
            return False
        RELOADS.labels("applied").inc()
        log.info("expert catalog reloaded from %s: %s", self.path, catalog.names)
        return True

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.check()
