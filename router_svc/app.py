"""Assembles a router replica: Kafka producer, reply listener, live policy, embedder, gRPC."""
from __future__ import annotations

import logging

from grpc_health.v1 import health_pb2

from bandit.context import context_dim
from bandit.embedder import Embedder
from bandit.policies import make_policy
from common.catalog_watch import CatalogWatcher, FileWatcher
from common.claims import PartStore
from common.experts import ExpertCatalog
from common.kafka import ensure_topics, make_producer
from common.lifecycle import stop_within
from common.redis_client import connect
from common.serving import ServingPointer
from common.settings import RouterSettings
from common.snapshots import SnapshotStore

from .auth import Authenticator, KeyRing
from .core import RouterCore
from .dashboard import Board, DashboardFeed
from .http_api import start_http
from .live_policy import LivePolicy
from .metrics import KEY_RELOADS
from .owners import Owners
from .policy_set import PolicySet
from .replies import ReplyListener
from .tenants import Limits, Tenants
from .server import SERVICE, server_credentials, start_grpc

log = logging.getLogger(__name__)


class RouterApp:
    def __init__(self, settings: RouterSettings, catalog: ExpertCatalog, embedder: Embedder | None = None):
        self.s = settings
        self.catalog = catalog               # the one at start; RouterCore holds the live one
        self.embedder = embedder
        self.watcher: CatalogWatcher | None = None
        self.key_watcher: FileWatcher | None = None
        self.port = 0
        self.http, self.http_task, self.http_port = None, None, None
        self.feed: DashboardFeed | None = None

    async def start(self) -> "RouterApp":
        s = self.s
        self.embedder = self.embedder or Embedder(
            s.embedding_model, s.embedding_device, s.embed_batch_size, s.embed_max_wait_ms, s.embedding_backend,
            s.embedding_max_seq_length, s.embedding_cache_size, s.embed_forward_batch, s.embed_parallel)
        await self.embedder.start()
        reply_topic = s.reply_topic(s.router_id)
        topics = {t: s.topic_partitions for t in (s.decisions_topic, s.results_topic, s.ratings_topic,
                                                  s.rewards_topic, s.dead_letter_topic)}
        topics.update(self._expert_topics(self.catalog))
        topics[reply_topic] = 1
        await ensure_topics(s.kafka_bootstrap, topics)
        self.producer = make_producer(s.kafka_bootstrap)
        await self.producer.start()
        self.replies = ReplyListener(s.kafka_bootstrap, reply_topic)
        await self.replies.start()
        self.redis = connect(s.redis_url)
        dim = context_dim(self.embedder.dim)
        self.policies = PolicySet({
            name: LivePolicy(make_policy(spec.kind, dim, spec.params, s.seed),
                             SnapshotStore(self.redis, s.redis_prefix, name), s.snapshot_poll_s, name)
            for name, spec in s.policy_specs.items()}, ServingPointer(self.redis, s.redis_prefix, s.policy),
            s.snapshot_poll_s)
        await self.policies.start()
        self.core = RouterCore(s, self.catalog, self.embedder, self.policies, self.producer, self.replies,
                               PartStore(self.redis, s.redis_prefix, s.part_ttl_s),
                               Owners(self.redis, s.redis_prefix, s.owner_ttl_s))
        ring = KeyRing.from_file(s.keys_file) if s.keys_file else None
        self.core.auth = Authenticator(ring, s.auth)
        self.core.tenants = Tenants(self._limits(ring), self.redis, s.redis_prefix, s.budget_step)
        self.key_watcher = FileWatcher(s.keys_file, s.catalog_poll_s, KeyRing.from_file, self.apply_keys,
                                       "keys file", KEY_RELOADS) if s.keys_file and s.catalog_poll_s else None
        if self.key_watcher:
            self.key_watcher.start()
        self.server, self.port, self.health = await start_grpc(self.core, s.host, s.port, s.max_message_bytes,
                                                               server_credentials(s))
        if s.http_port is not None:
            board = None
            if s.dashboard:
                board = Board(self._premium_name, s.dashboard_bucket_s, s.dashboard_window_s)
                self.feed = DashboardFeed(s, board)
                await self.feed.start()
            self.http, self.http_task, self.http_port = await start_http(self.core, s.host, s.http_port, board)
        self.watcher = CatalogWatcher(s.experts_file, s.catalog_poll_s, self.apply_catalog) \
            if s.experts_file and s.catalog_poll_s else None
        if self.watcher:
            self.watcher.start()
        log.info("router %s serving on %s:%d (policy %s v%d; shadows %s)", s.router_id, s.host, self.port,
                 self.live.name, self.live.version, sorted(set(self.policies.lives) - {self.live.name}) or "none")
        return self

    @property
    def live(self):
        """The serving policy."""
        return self.policies.serving

    def _premium_name(self) -> str:
        premium = self.core.catalog.premium
        return premium.name if premium else ""

    def _expert_topics(self, catalog: ExpertCatalog) -> dict[str, int]:
        return {self.s.expert_topic(e): self.s.topic_partitions for e in catalog.names}

    def _limits(self, ring: KeyRing | None) -> dict[str, Limits]:
        """BR_TENANT_LIMITS, overridden per tenant by the keys file's tables."""
        limits = {t: Limits.parse(raw, f"BR_TENANT_LIMITS[{t!r}]") for t, raw in self.s.tenant_limits.items()}
        for tenant, lim in (ring.limits if ring else {}).items():     # every known tenant gets its metrics label
            limits[tenant] = lim if lim != Limits() else limits.get(tenant, Limits())
        return limits

    async def apply_keys(self, ring: KeyRing) -> None:
        limits = self._limits(ring)
        self.core.auth = Authenticator(ring, self.s.auth)
        self.core.tenants.configure(limits)

    async def apply_catalog(self, catalog: ExpertCatalog) -> None:
        """A reloaded catalog: its request topics first, so a new expert is routable at once."""
        await ensure_topics(self.s.kafka_bootstrap, self._expert_topics(catalog))
        self.core.set_catalog(catalog)

    async def stop(self, grace: float = 5.0) -> None:
        """Graceful: report NOT_SERVING, let in-flight requests finish, then close clients."""
        for watcher in (self.watcher, self.key_watcher):
            if watcher:
                await watcher.stop()
        for name in ("", SERVICE):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        if self.http:
            self.http.should_exit = True             # finishes requests in flight, then returns
            await stop_within(self.http_task, grace + 5, "http door")
        if self.feed:
            await stop_within(self.feed.stop(), 15, "dashboard feed")
        await self.server.stop(grace)
        await self.policies.stop()
        await stop_within(self.replies.stop(), 15, "reply listener")
        await stop_within(self.producer.stop(), 15, "router producer")
        await self.embedder.stop()
        await stop_within(self.redis.aclose(), 5, "redis client")