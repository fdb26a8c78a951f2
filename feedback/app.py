"""The feedback service: the join and the learner, each a consumer group on plain aiokafka.

join (join_loop.py): decisions + results + ratings -> rewards, per-decision state in
Redis; learners (rewards_in.py): router.rewards -> policy snapshots in Redis, one
consumer group per configured policy (the serving one and its shadows learn from the
same rewards, each at its own pace and with its own exactly-once record). All commit
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
        self.learners: dict[str, RewardConsumer] = {}
        for name, spec in s.policy_specs.items():
            learner = Learner(lambda spec=spec: make_policy(spec.kind, self.dim, spec.params),
                              SnapshotStore(self.redis, s.redis_prefix, name), s.seen_ttl_s)
            # BR_POLICY's group keeps its historical name; only its learner dead-letters
            # a malformed reward (once, not once per policy).
            first = name == s.policy
            self.learners[name] = RewardConsumer(s, learner, self.dim, group_suffix="" if first else f"-{name}",
                                                 dead_letters=first)
        self.join = JoinLoop(s, JoinStore(self.redis, s.redis_prefix))
        await self.join.start()
        for consumer in self.learners.values():
            await consumer.start()
        # Ready = every group holds its assignments: a dead predecessor's partitions are ours.
        await self.join.membership.wait(join_timeout_s)
        for consumer in self.learners.values():
            await consumer.membership.wait(join_timeout_s)
        return self

    @property
    def learner(self) -> Learner:
        """BR_POLICY's learner."""
        return self.learners[self.s.policy].learner

    async def stop(self) -> None:
        await self.join.stop()
        for consumer in self.learners.values():
            await consumer.stop()
        await stop_within(self.redis.aclose(), 5, "feedback redis client")
