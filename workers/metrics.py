"""Prometheus metrics of the worker process."""
from prometheus_client import Counter

CALLS = Counter("worker_calls_total", "Expert calls by outcome", ["expert", "outcome"])
MALFORMED = Counter("worker_malformed_total", "Dead-lettered requests", ["expert"])
DUPLICATES = Counter("worker_duplicates_total", "Redelivered requests skipped", ["expert"])
EXPIRED = Counter("worker_expired_total", "Requests past their deadline, not sent", ["expert"])
