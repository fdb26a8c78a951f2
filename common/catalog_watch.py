"""Live reload of configuration files: the expert catalog (routers and workers), API keys.

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
from typing import Awaitable, Callable, Generic, TypeVar

from prometheus_client import Counter

from .experts import ExpertCatalog
from .lifecycle import cancel_task

log = logging.getLogger(__name__)

T = TypeVar("T")
RELOADS = Counter("catalog_reloads_total", "Expert catalog reloads by outcome", ["outcome"])


class FileWatcher(Generic[T]):
    """Poll a file; when its bytes change, `load` it and `apply` the result. A version that
    does not load or apply is logged and counted once, and the last good one stays."""

    def __init__(self, path: Path, interval_s: float, load: Callable[[Path], T],
                 apply: Callable[[T], Awaitable[None]], what: str, reloads: Counter):
        self.path = Path(path)
        self.interval_s = interval_s
        self.load, self.apply, self.what, self.reloads = load, apply, what, reloads
        self._digest = self._read_digest()
        self._task: asyncio.Task | None = None

    def _read_digest(self) -> str:
        try:
            return hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            return ""

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"watch-{self.path.name}")

    async def stop(self) -> None:
        await cancel_task(self._task)

    async def check(self) -> bool:
        """Apply the file if it changed since the last good (or rejected) version; True if applied."""
        digest = self._read_digest()
        if not digest or digest == self._digest:
            return False
        self._digest = digest            # a bad version is reported once, not every poll
        try:
            await self.apply(self.load(self.path))
        except Exception as exc:
            self.reloads.labels("rejected").inc()
            log.error("%s %s not applied, keeping the previous one: %s", self.what, self.path, exc)
            return False
        self.reloads.labels("applied").inc()
        log.info("%s reloaded from %s", self.what, self.path)
        return True

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.check()


class CatalogWatcher(FileWatcher[ExpertCatalog]):
    def __init__(self, path: Path, interval_s: float, apply: Callable[[ExpertCatalog], Awaitable[None]]):
        super().__init__(path, interval_s, ExpertCatalog.from_file, apply, "expert catalog", RELOADS)
