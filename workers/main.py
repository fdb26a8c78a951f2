"""`bandit-worker`: run the worker pools of the configured experts until SIGINT/SIGTERM."""
from __future__ import annotations

import asyncio

from common.experts import ExpertCatalog
from common.kafka import ensure_topics, make_producer
from common.lifecycle import stop_within, wait_for_signal
from common.redis_client import connect
from common.logs import setup_logging
from common.metrics_http import ready_field, serve_metrics
from common.settings import WorkerSettings

from .ledger import AnswerLedger
from .pool import ExpertPool


class WorkerApp:
    def __init__(self, settings: WorkerSettings, catalog: ExpertCatalog):
        names = catalog.names if settings.experts == "all" else [n.strip() for n in settings.experts.split(",")]
        unknown = [n for n in names if n not in catalog]
        if unknown:
            raise ValueError(f"BR_EXPERTS names unknown experts {unknown}; configured: {catalog.names}")
        self.s = settings
        self.experts = [catalog[n] for n in names]

    async def start(self) -> "WorkerApp":
        s = self.s
        topics = {s.expert_topic(e.name): s.topic_partitions for e in self.experts}
        topics.update({s.results_topic: s.topic_partitions, s.dead_letter_topic: s.topic_partitions})
        await ensure_topics(s.kafka_bootstrap, topics)
        self.producer = make_producer(s.kafka_bootstrap)
        await self.producer.start()
        self.redis = connect(s.redis_url)
        ledger = AnswerLedger(self.redis, s.redis_prefix, s.worker_id, s.answer_ttl_s)
        self.pools = [ExpertPool(s, e, self.producer, ledger) for e in self.experts]
        for pool in self.pools:
            await pool.start()
        return self

    async def stop(self) -> None:
        await asyncio.gather(*(stop_within(p.stop(), 15, f"pool {p.expert.name}") for p in self.pools))
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
