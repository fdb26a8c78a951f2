"""Shutdown that cannot hang: every step gets a time limit, and an overrun is logged."""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable

log = logging.getLogger(__name__)


async def stop_within(step: Awaitable, seconds: float, what: str) -> None:
    try:
        await asyncio.wait_for(step, seconds)
    except asyncio.TimeoutError:
        log.warning("stopping %s took over %.0fs; abandoned", what, seconds)
    except Exception as exc:   # a client already broken by an outage must not block shutdown
        log.warning("stopping %s failed: %s", what, exc)


async def cancel_task(task: asyncio.Task | None, seconds: float = 5.0) -> None:
    """Cancel and wait a bounded time: some client libraries swallow a cancellation."""
    if task is None or task.done():
        return
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        log.warning("task %s ignored cancellation for %.0fs; left behind", task.get_name(), seconds)


async def wait_for_signal() -> None:
    """Returns on SIGINT or SIGTERM (a process manager's stop)."""
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
