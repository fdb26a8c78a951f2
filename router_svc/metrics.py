"""Prometheus metrics of the router process."""
from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("router_requests_total", "gRPC requests by method and status", ["method", "code"])
DECISIONS = Counter("router_decisions_total", "Decisions by chosen expert", ["expert"])
FALLBACKS = Counter("router_fallbacks_total", "Requests served by the fallback expert", ["chosen", "reason"])
LATE_REPLIES = Counter("router_late_replies_total", "Replies nobody waited for (late or duplicate)")
BAD_REPLIES = Counter("router_bad_replies_total", "Undecodable replies")
POLICY_VERSION = Gauge("router_policy_version", "Snapshot version the router holds of each policy", ["policy"])
SERVING = Gauge("router_serving_policy", "1 for the policy that serves, 0 for those in shadow", ["policy"])
SHADOW_ERRORS = Counter("router_shadow_errors_total", "Shadow policy selections that raised (the request "
                        "was served regardless)", ["policy"])
LATENCY = Histogram("router_route_seconds", "End-to-end Route latency",
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
SHED = Counter("router_shed_total", "Requests refused at capacity (RESOURCE_EXHAUSTED / 429)")
IN_FLIGHT = Gauge("router_in_flight", "Route and Decide calls in progress")
CIRCUIT = Gauge("router_circuit_state", "An expert's breaker: 0 closed, 1 half-open, 2 open", ["expert"])
CIRCUIT_OPENED = Counter("router_circuit_opened_total", "Times an expert's breaker opened", ["expert"])
KEY_RELOADS = Counter("router_keys_reloads_total", "API keys file reloads by outcome", ["outcome"])
UNAUTHENTICATED = Counter("router_unauthenticated_total", "Calls refused for a missing or unknown key")
TENANT_REQUESTS = Counter("router_tenant_requests_total", "Route/Decide calls by tenant (configured ones; "
                          "'other' for the rest) and outcome", ["tenant", "outcome"])
TENANT_COST = Counter("router_tenant_cost_total", "What a tenant's served answers cost (estimated for Decide)",
                      ["tenant"])
TENANT_COST_WEIGHT = Gauge("router_tenant_pacing_weight", "The cost weight a tenant's budget adds now", ["tenant"])
RATE_LIMITER_ERRORS = Counter("router_rate_limiter_errors_total", "Rate checks let through: Redis unreachable")
CIRCUIT_KEPT = Counter("router_circuit_kept_closed_total", "Failures that would have opened the last closed "
                       "breaker (kept closed: every other expert's is open)", ["expert"])
