"""Prometheus metrics of the feedback app (join and learner)."""
from prometheus_client import Counter, Gauge

EVENTS = Counter("feedback_events_total", "Events seen by the join, by kind and outcome", ["kind", "outcome"])
REWARDS = Counter("feedback_rewards_total", "Rewards emitted by the join")
DEAD = Counter("feedback_dead_letters_total", "Dead letters by the topic the event came from", ["source_topic"])
LEARNED = Counter("feedback_learned_total", "Rewards applied to the policy (each reward once)")
REPEATS = Counter("feedback_repeated_rewards_total", "Rewards skipped because they were already learned")
CONFLICTS = Counter("feedback_snapshot_conflicts_total", "Publishes refused because another learner (or a rollback) changed a part first; the batch is applied again")
REDIS_RETRIES = Counter("feedback_redis_retries_total", "Learner batches retried because Redis was unreachable")
SNAPSHOT_VERSION = Gauge("feedback_snapshot_version", "Last snapshot version this learner published")
