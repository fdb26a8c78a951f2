"""The feedback service: the join and the learner, each a consumer group on plain aiokafka.

join (join_loop.py): decisions + results + ratings -> rewards, per-decision state in
Redis; learner (rewards_in.py): router.rewards -> policy snapshots in Redis. Both commit
offsets only after what they did is durable, so a SIGKILL at any moment loses nothing
and a restart is ready once it holds its group assignments (no state to replay).
"""
from __future__ import annotations

from common.kafka import ensure_topics
from common.lifecycle import stop_within
from common.redis_client import connect
from common.settings import FeedbackSettings
from common.snapshots import SnapshotStore
from bandit.context import context_dim
from bandit.policies import make_policy

from .join_loop import JoinLoop
from .join_store import JoinStore
from .learner import Learner
from .rewards_in import RewardConsumer


class FeedbackApp:
    def __init__(self, s: FeedbackSettings):
        self.s = s
        self.dim = context_dim(s.embedding_dim)

    async def start(self, join_timeout_s: float = 120.0) -> "FeedbackApp":
        s = self.s
        await ensure_topics(s.kafka_bootstrap, {t: s.topic_partitions for t in (
            s.decisions_topic, s.results_topic, s.ratings_topic, s.rewards_topic, s.dead_letter_topic)})
        self.redis = connect(s.redis_url)
        store = SnapshotStore(self.redis, s.redis_prefix, s.policy)
        self.learner = Learner(lambda: make_policy(s.policy, self.dim, s.policy_params), store, s.seen_ttl_s)
        self.join = JoinLoop(s, JoinStore(self.redis, s.redis_prefix))
        self.rewards = RewardConsumer(s, self.learner, self.dim)
        await self.join.start()
        await self.rewards.start()
        # Ready = both hold their assignments: a dead predecessor's partitions are ours.
        await self.join.membership.wait(join_timeout_s)
        await self.rewards.membership.wait(join_timeout_s)
        return self

    async def stop(self) -> None:
        await self.join.stop()
        await self.rewards.stop()
        await stop_within(self.redis.aclose(), 5, "feedback redis client")
