"""The one way every process connects to Redis: bounded timeouts, retries across restarts."""
from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError


def connect(url: str) -> aioredis.Redis:
    return aioredis.from_url(url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=10,
                             retry=Retry(ExponentialBackoff(cap=2.0, base=0.1), retries=3),
                             retry_on_error=[ConnectionError, TimeoutError])
