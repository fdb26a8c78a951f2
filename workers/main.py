"""`bandit-worker`: run the worker pools of the configured experts until SIGINT/SIGTERM."""
from __future__ import annotations

import asyncio

from common.catalog_watch import CatalogWatcher
from common.experts import ExpertCatalog, ExpertConfig
from common.kafka import ensure_topics, make_producer
from common.lifecycle import stop_within, wait_for_signal
from common.logs import setup_logging
from common.metrics_http import ready_field, serve_metrics
from common.claims import PartStore
from common.redis_client import connect
from common.settings import WorkerSettings

from .ledger import AnswerLedger
from .pool import ExpertPool


class WorkerApp:
    def __init__(self, settings: WorkerSettings, catalog: ExpertCatalog):
        self.s = settings
        self.experts = self._served(catalog)
        self.pools: dict[str, ExpertPool] = {}
        self.watcher: CatalogWatcher | None = None

    def _served(self, catalog: ExpertCatalog) -> list[ExpertConfig]:
        """The experts this process serves: BR_EXPERTS names them, or "all" of the catalog."""
        s = self.s
        names = catalog.names if s.experts == "all" else [n.strip() for n in s.experts.split(",")]
        unknown = [n for n in names if n not in catalog]
        if unknown:
            raise ValueError(f"BR_EXPERTS names unknown experts {unknown}; configured: {catalog.names}")
        return [catalog[n] for n in names]

    async def start(self) -> "WorkerApp":
        s = self.s
        await ensure_topics(s.kafka_bootstrap, {s.results_topic: s.topic_partitions,
                                                s.dead_letter_topic: s.topic_partitions})
        self.producer = make_producer(s.kafka_bootstrap)
        await self.producer.start()
        self.redis = connect(s.redis_url)
        self.ledger = AnswerLedger(self.redis, s.redis_prefix, s.worker_id, s.answer_ttl_s)
        self.parts = PartStore(self.redis, s.redis_prefix)
        await self._start_pools(self.experts)
        if s.experts_file and s.catalog_poll_s:
            self.watcher = CatalogWatcher(s.experts_file, s.catalog_poll_s, self.apply_catalog)
            self.watcher.start()
        return self

    async def _start_pools(self, experts: list[ExpertConfig]) -> None:
        s = self.s
        await ensure_topics(s.kafka_bootstrap, {s.expert_topic(e.name): s.topic_partitions for e in experts})
        for e in experts:
            self.pools[e.name] = pool = ExpertPool(s, e, self.producer, self.ledger, self.parts)
            await pool.start()

    async def _stop_pools(self, names: list[str]) -> None:
        await asyncio.gather(*(stop_within(self.pools.pop(n).stop(), 15, f"pool {n}") for n in names))

    async def apply_catalog(self, catalog: ExpertCatalog) -> None:
        """A reloaded catalog: pools for added experts start, removed ones stop (finishing the
        batch in hand), and an expert whose entry changed (price, backend options) restarts."""
        wanted = {e.name: e for e in self._served(catalog)}
        gone = [n for n, p in self.pools.items() if n not in wanted or p.expert != wanted[n]]
        await self._stop_pools(gone)
        await self._start_pools([e for n, e in wanted.items() if n not in self.pools])
        self.experts = list(wanted.values())

    async def stop(self) -> None:
        if self.watcher:
            await self.watcher.stop()
        await self._stop_pools(list(self.pools))
        await stop_within(self.producer.stop(), 15, "worker producer")
        await stop_within(self.redis.aclose(), 5, "worker redis client")


async def run(settings: WorkerSettings) -> None:
    app = await WorkerApp(settings, settings.load_catalog()).start()
    metrics = serve_metrics(settings)
    print(f"READY worker {settings.worker_id} experts={','.join(e.name for e in app.experts)}"
          f"{ready_field(metrics)}", flush=True)
    await wait_for_signal()
    await app.stop()


def main() -> None:
    setup_logging()
    asyncio.run(run(WorkerSettings()))


if __name__ == "__main__":
    main()
