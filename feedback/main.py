"""`bandit-feedback`: run the join and learner agents (a faust worker) until SIGINT/SIGTERM."""
from __future__ import annotations

import asyncio

import faust

from common.kafka import ensure_topics
from common.logs import setup_logging
from common.metrics_http import ready_field, serve_metrics
from common.settings import FeedbackSettings

from .app import build_app


def main() -> None:
    setup_logging()
    s = FeedbackSettings()
    # Source topics must exist with the partition count the table is co-partitioned with; the
    # table's changelog too (compacted), or faust can read its metadata as 0 partitions on a
    # fresh broker and crash the join agent (PartitionsMismatch, seen here).
    changelog = f"{s.app_id}-joins-changelog"
    asyncio.run(ensure_topics(s.kafka_bootstrap, {t: s.topic_partitions for t in (
        s.decisions_topic, s.results_topic, s.ratings_topic, s.rewards_topic, s.dead_letter_topic,
        s.topic("feedback.sweeps"), changelog)}, configs={changelog: {"cleanup.policy": "compact"}}))
    app = build_app(s)
    metrics = serve_metrics(s)

    @app.task
    async def announce() -> None:
        print(f"READY feedback {s.app_id}{ready_field(metrics)}", flush=True)

    faust.Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False).execute_from_commandline()


if __name__ == "__main__":
    main()
