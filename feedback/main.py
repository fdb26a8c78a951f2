"""`bandit-feedback`: run the join and the learner until SIGINT/SIGTERM."""
from __future__ import annotations

import asyncio

from common.lifecycle import wait_for_signal
from common.logs import setup_logging
from common.metrics_http import ready_field, serve_metrics
from common.settings import FeedbackSettings

from .app import FeedbackApp


async def run(s: FeedbackSettings) -> None:
    app = await FeedbackApp(s).start()
    metrics = serve_metrics(s)
    print(f"READY feedback {s.app_id}{ready_field(metrics)}", flush=True)
    await wait_for_signal()
    await app.stop()


def main() -> None:
    setup_logging()
    asyncio.run(run(FeedbackSettings()))


if __name__ == "__main__":
    main()
