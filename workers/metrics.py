"""Prometheus metrics of the worker process."""
from prometheus_client import Counter, Histogram

CALLS = Counter("worker_calls_total", "Expert calls by outcome", ["expert", "outcome"])
CALL_SECONDS = Histogram("worker_call_seconds", "Expert call latency", ["expert"],
                         buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64))
COST = Counter("worker_cost_total", "Cost of expert calls, in the catalog's unit", ["expert"])
MALFORMED = Counter("worker_malformed_total", "Dead-lettered requests", ["expert"])
DUPLICATES = Counter("worker_duplicates_total", "Redelivered requests skipped (answered here, or claimed "
                     "by another worker)", ["expert"])
RESENT = Counter("worker_resent_total", "Redelivered requests answered from the ledger, expert not called",
                 ["expert"])
LEDGER_ERRORS = Counter("worker_ledger_errors_total", "Answer-ledger calls that failed (Redis unreachable)")
EXPIRED = Counter("worker_expired_total", "Requests past their deadline, not sent", ["expert"])
STREAMED = Counter("worker_stream_pieces_total", "Pieces of streamed answers sent to routers", ["expert"])
RETRIES = Counter("worker_backend_retries_total", "Backend calls tried again after a transient error", ["expert"])
