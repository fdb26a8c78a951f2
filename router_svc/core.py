"""The router's logic, independent of gRPC: decide, dispatch, await, fall back, log.

Route: embed -> context -> policy choice -> decision event + expert request on Kafka ->
await the expert's result on this replica's reply topic. When the chosen expert fails or
does not answer within its share of the deadline, the router records the failure as the
chosen expert's result (so the learner sees it) and asks the fallback expert. A streamed
route passes the answer's pieces on as they arrive; once one has reached the caller the
expert gets the whole deadline and there is no fallback (the caller has part of its answer).
"""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import AsyncIterator, Callable

import numpy as np
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from bandit.context import FEATURE_VERSION, build_context
from bandit.embedder import Embedder, joint
from bandit.media_features import describe_media
from bandit.pacing import BudgetPacer
from bandit.policies import Choice, Score
from common.claims import PartStore, part_ref
from common.experts import ExpertCatalog
from common.kafka import now_ms
from common.media import Part, open_image
from common.settings import RouterSettings
from proto import events_pb2

from . import metrics
from .auth import Authenticator, Tenant
from .breakers import Breakers
from .errors import DeadlineExceeded, ExpertUnavailable, NotReady, Overloaded, PermissionDenied, RoutingError
from .owners import Owners
from .policy_set import PolicySet
from .replies import ReplyListener
from .scoring import BatchedSelect
from .tenants import Tenants
from .validation import check_content, check_feedback, check_options, check_query

log = logging.getLogger(__name__)
_NO_SCORE = Score()


@dataclass
class Decision:
    event: events_pb2.DecisionEvent
    choice: Choice
    eligible: list[str]
    parts: list[Part] = field(default_factory=list)


@dataclass
class Routed:
    decision: Decision
    result: events_pb2.ExpertResult


class RouterCore:
    def __init__(self, settings: RouterSettings, catalog: ExpertCatalog, embedder: Embedder,
                 policies: PolicySet, producer: AIOKafkaProducer, replies: ReplyListener, parts: PartStore,
                 owners: Owners | None = None):
        self.s = settings
        self.parts, self.owners = parts, owners
        self.embedder = embedder
        self.policies = policies
        self.producer = producer
        self.replies = replies
        self.in_flight, self.max_in_flight = 0, settings.max_in_flight
        self.breakers = Breakers(settings.breaker_failures, settings.breaker_cooldown_s)
        self.scoring = BatchedSelect()
        self.auth = Authenticator(None, required=False)     # RouterApp sets the configured one
        self.tenants = Tenants({}, None, "")                 # and the tenants' limits
        self.pacer = BudgetPacer(settings.budget_per_query, settings.budget_step) \
            if settings.budget_per_query else None
        self.set_catalog(catalog)

    def set_catalog(self, catalog: ExpertCatalog) -> None:
        """Serve a new catalog (live reload); requests in flight finish with the old one.
        The policy meets an added expert cold (its exploration bounded when the policy's
        cold_updates is set); a removed one stops being eligible, its learned state kept."""
        premium = catalog.premium
        fallback = self.s.fallback_expert or (premium.name if premium else "")
        if fallback and fallback not in catalog:
            raise ValueError(f"fallback expert {fallback!r} is not configured")
        self.catalog, self.fallback = catalog, fallback

    @contextmanager
    def _admitted(self):
        """Shed a request beyond max_in_flight at once (the caller retries elsewhere or later)
        rather than queue it behind the embedder past its deadline."""
        if self.max_in_flight and self.in_flight >= self.max_in_flight:
            metrics.SHED.inc()
            raise Overloaded(f"router at capacity: {self.in_flight} requests in flight (max_in_flight); "
                             f"retry after {self.s.retry_after_s:g}s", self.s.retry_after_s)
        self.in_flight += 1
        metrics.IN_FLIGHT.set(self.in_flight)
        try:
            yield
        finally:
            self.in_flight -= 1
            metrics.IN_FLIGHT.set(self.in_flight)

    # -- decide -----------------------------------------------------------------
    @asynccontextmanager
    async def _tenant_call(self, tenant: str):
        """The tenant's rate, then the call, counted by tenant and outcome."""
        label = self.tenants.label(tenant)
        try:
            await self.tenants.admit(tenant)
            yield
        except RoutingError as exc:
            if not isinstance(exc, Overloaded):       # the limiter counts its own refusals
                metrics.TENANT_REQUESTS.labels(label, exc.code.name.lower()).inc()
            raise
        metrics.TENANT_REQUESTS.labels(label, "ok").inc()

    async def decide(self, query: str, options, mode: int, parts=()) -> Decision:
        with self._admitted():
            async with self._tenant_call(options.tenant):
                return await self._decide(query, options, mode, parts)

    async def _decide(self, query: str, options, mode: int, parts=()) -> Decision:
        began = time.perf_counter()
        check_query(query, self.s.max_query_chars, has_parts=bool(parts))
        media = check_content(parts, self.s.media_limits)
        modality, eligible = check_options(options, self.catalog, len(query), [p.modality for p in media])
        eligible, shut = self.breakers.split(eligible)
        if not eligible:
            wait = self.breakers.retry_after(shut)
            raise ExpertUnavailable(f"every eligible expert's circuit breaker is open ({', '.join(shut)}: repeated "
                                    f"failures); retry after {wait:.1f}s", retry_after_s=max(wait, 0.1))
        cost_weight = options.cost_weight if options.HasField("cost_weight") else self.s.default_cost_weight
        cost_weight = self.tenants.weight(options.tenant, cost_weight)
        if self.pacer:
            cost_weight = self.pacer.weight(cost_weight)
        features, text = await asyncio.to_thread(describe_media, media, query) if media else ({}, query)
        embed_began = time.perf_counter()
        embedding = await self.embedder.embed(text)
        embed_ms = (time.perf_counter() - embed_began) * 1000
        if self.embedder.embeds_images and any(p.modality == "image" for p in media):
            embedding = joint(embedding, await asyncio.to_thread(self._image_vectors, media))
        x = build_context(embedding, query, modality, options.hints, features)
        prices = {e: self.catalog[e].expected_cost(len(query)) for e in eligible}
        serving = self.policies.serving
        choice = await self.scoring.select(serving.policy, x, eligible, cost_weight, prices)
        event = events_pb2.DecisionEvent(
            decision_id=str(uuid.uuid4()), ts_ms=now_ms(), mode=mode, tenant=options.tenant,
            modality=modality, context=x.tolist(), chosen_expert=choice.expert,
            propensity=choice.propensity, probabilities=choice.probabilities,
            policy_name=serving.name, policy_version=serving.version,
            embedding_model=self.embedder.version, feature_version=FEATURE_VERSION,
            cost_weight=cost_weight, router_id=self.s.router_id, query_chars=len(query),
            hints=options.hints, prices=prices, parts=[part_ref(p) for p in media],
            shadows=self.policies.shadow_choices(x, eligible, cost_weight, prices), embed_ms=embed_ms)
        for name, sc in choice.scores.items():
            event.scores[name].CopyFrom(events_pb2.ScoreParts(
                estimated_quality=sc.estimated_quality, estimated_cost=sc.estimated_cost,
                exploration_bonus=sc.exploration_bonus, score=sc.score))
        event.decide_ms = (time.perf_counter() - began) * 1000
        metrics.DECISIONS.labels(choice.expert).inc()
        return Decision(event, choice, eligible, media)

    def _image_vectors(self, media: list[Part]) -> np.ndarray:
        """The request's images embedded by a model that embeds images (CLIP)."""
        return self.embedder.encode_images([open_image(p, self.s.max_image_pixels)
                                            for p in media if p.modality == "image"])

    def _note_owner(self, event: events_pb2.DecisionEvent) -> None:
        if self.auth.required and self.owners and event.tenant:
            self.owners.remember(event.decision_id, event.tenant)

    async def log_decision(self, decision: Decision) -> None:
        await self._send(self.s.decisions_topic, decision.event.decision_id, decision.event)
        self._note_owner(decision.event)
        if decision.event.mode == events_pb2.DECISION_MODE_DECIDE:
            # The caller pays later; pace on what the policy expects the choice to cost.
            expected = max(decision.choice.scores.get(decision.event.chosen_expert, _NO_SCORE).estimated_cost, 0.0)
            self.tenants.spent(decision.event.tenant, expected)
            if self.pacer:
                self.pacer.observe(expected)

    # -- route ------------------------------------------------------------------
    async def route(self, query: str, options, timeout_s: float, parts=(),
                    on_piece: Callable[[events_pb2.ExpertResult], None] | None = None) -> Routed:
        """Decide, dispatch, wait, fall back. `on_piece`: stream the answer's pieces to it."""
        with self._admitted():
            async with self._tenant_call(options.tenant):
                return await self._route(query, options, timeout_s, parts, on_piece)

    async def route_stream(self, query: str, options, timeout_s: float,
                           parts=()) -> AsyncIterator[events_pb2.ExpertResult | Routed]:
        """Route, yielding the answer's pieces (partial results) as they arrive and the Routed
        last; raises the RoutingError where route would. A caller that stops listening does
        not stop the route: its decision and result are still logged for the learner."""
        pieces: asyncio.Queue = asyncio.Queue()
        routing = asyncio.create_task(self.route(query, options, timeout_s, parts, on_piece=pieces.put_nowait))
        while True:
            while not pieces.empty():
                yield pieces.get_nowait()
            if routing.done():
                break
            getter = asyncio.create_task(pieces.get())
            try:
                await asyncio.wait({routing, getter}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                got = getter.done() and not getter.cancelled()
                if not got:
                    getter.cancel()                 # an item it was about to take stays queued
            if got:
                yield getter.result()
        yield routing.result()

    async def _route(self, query: str, options, timeout_s: float, parts, on_piece) -> Routed:
        deadline = time.monotonic() + timeout_s
        decision = await self._decide(query, options, events_pb2.DECISION_MODE_ROUTE, parts)
        did, chosen = decision.event.decision_id, decision.event.chosen_expert
        began = False

        def relay(piece: events_pb2.ExpertResult) -> None:
            nonlocal began
            began = True
            on_piece(piece)

        relay_to = relay if on_piece else None
        await self._store_parts(decision, deadline - time.monotonic())
        first_wait = (deadline - time.monotonic()) * (self.s.expert_timeout_share if self._has_fallback(decision) else 1.0)
        result = await self._ask(decision, query, options, chosen, 0, first_wait, deadline, relay_to, log_decision=True)
        if result is not None and result.ok:
            return self._served(decision, result)
        reason = "timeout" if result is None else "error"
        if result is None:
            await self._timed_out(did, chosen, deadline)
        if began or not self._has_fallback(decision):
            why = "after its answer began streaming (no fallback then)" if began else "and no fallback expert is eligible"
            raise (DeadlineExceeded if result is None else ExpertUnavailable)(
                f"expert {chosen!r} failed ({result.error if result else 'timeout'}) {why}; decision_id={did}", did)
        metrics.FALLBACKS.labels(chosen, reason).inc()
        log.info("decision %s: %s %s, falling back to %s", did, chosen, reason, self.fallback)
        fb = await self._ask(decision, query, options, self.fallback, 1, deadline - time.monotonic(), deadline, relay_to)
        if fb is None:
            self.breakers.record(self.fallback, False, self.catalog.names)
            raise DeadlineExceeded(f"neither {chosen!r} nor fallback {self.fallback!r} answered "
                                   f"before the deadline; decision_id={did}", did)
        if not fb.ok:
            raise ExpertUnavailable(f"{chosen!r} and fallback {self.fallback!r} failed: {fb.error}; "
                                    f"decision_id={did}", did)
        return self._served(decision, fb)

    async def _timed_out(self, did: str, chosen: str, deadline: float) -> None:
        """Nobody answered in time: record that as the chosen expert's result (for the
        learner), and only once that write succeeds count it against the expert's breaker:
        a timeout while the event log is down is the log's failure, not the expert's."""
        try:
            await self._send(self.s.results_topic, did, events_pb2.ExpertResult(
                request_id=f"{did}:0", decision_id=did, expert=chosen, attempt=0, ok=False,
                error="no answer before the expert's deadline", ts_ms=now_ms(),
                producer=f"router:{self.s.router_id}"), max(deadline - time.monotonic(), 1.0))   # a second past it at most
        except NotReady:
            self.breakers.release(chosen)
            raise
        self.breakers.record(chosen, False, self.catalog.names)

    async def _store_parts(self, decision: Decision, timeout_s: float) -> None:
        """Claim check: the parts go to Redis once; the expert requests carry their refs."""
        if not decision.parts:
            return
        try:
            await asyncio.wait_for(asyncio.gather(*(self.parts.put(p) for p in decision.parts)),
                                   timeout=max(timeout_s, 0.001))
        except (RedisError, asyncio.TimeoutError) as exc:
            raise NotReady(f"part store unavailable ({type(exc).__name__}); try again",
                           decision.event.decision_id) from exc

    def _served(self, decision: Decision, result: events_pb2.ExpertResult) -> Routed:
        self.tenants.spent(decision.event.tenant, result.cost)
        if self.pacer:
            self.pacer.observe(result.cost)
        return Routed(decision, result)

    def _has_fallback(self, decision: Decision) -> bool:
        return bool(self.fallback) and self.fallback != decision.event.chosen_expert \
            and self.fallback in decision.eligible

    async def _ask(self, decision: Decision, query: str, options, expert: str, attempt: int,
                   wait_s: float, deadline: float, on_piece=None,
                   log_decision: bool = False) -> events_pb2.ExpertResult | None:
        """Dispatch to `expert` and wait for its result; None when nothing came within wait_s
        (or, once a streamed answer has begun, by the request's deadline)."""
        did = decision.event.decision_id
        wait_s = max(wait_s, 0.001)
        request = events_pb2.ExpertRequest(
            request_id=f"{did}:{attempt}", decision_id=did, expert=expert, attempt=attempt,
            fallback=attempt > 0, query=query, modality=decision.event.modality,
            metadata=dict(options.metadata), deadline_ms=now_ms() + int(wait_s * 1000),
            reply_topic=self.s.reply_topic(self.s.router_id), parts=decision.event.parts,
            stream=on_piece is not None)
        pieces = 0

        def count(piece: events_pb2.ExpertResult) -> None:
            nonlocal pieces
            pieces += 1
            on_piece(piece)

        fut = self.replies.expect(did, attempt, count if on_piece else None)
        self.breakers.dispatched(expert)
        finished = False
        try:
            sends = [self._send(self.s.expert_topic(expert), did, request, wait_s)]
            if log_decision:
                sends.append(self._send(self.s.decisions_topic, did, decision.event, wait_s))
            await asyncio.gather(*sends)
            if log_decision:
                self._note_owner(decision.event)
            done, _ = await asyncio.wait({fut}, timeout=wait_s)
            if not done and pieces:      # the answer is under way: it may use the whole deadline
                done, _ = await asyncio.wait({fut}, timeout=max(deadline - time.monotonic(), 0.001))
            result = fut.result() if done else None
            if result is not None:       # a timeout is judged by the caller (see _timed_out)
                self.breakers.record(expert, result.ok, self.catalog.names)
            finished = True
            return result
        finally:
            if not finished:             # the event log was down, or the caller left: no verdict
                self.breakers.release(expert)
            self.replies.forget(did, attempt)

    async def _send(self, topic: str, key: str, message, timeout_s: float = 10.0) -> None:
        """Write one event and wait for the broker's ack, but never past timeout_s."""
        try:
            await asyncio.wait_for(self.producer.send_and_wait(topic, message.SerializeToString(),
                                                               key=key.encode()), timeout=max(timeout_s, 0.001))
        except (KafkaError, asyncio.TimeoutError) as exc:
            raise NotReady(f"event log unavailable ({type(exc).__name__} writing {topic}); try again",
                           key) from exc

    # -- feedback ---------------------------------------------------------------
    async def feedback(self, decision_id: str, quality: float, source: str, cost: float | None,
                       caller: Tenant | None = None) -> str:
        """A rating, stamped with the caller's tenant (an admin's is not). Another tenant's
        decision is refused here when its owner is on record (owners.py), and by the join
        (a dead letter with the reason) when it is not."""
        decision_id = check_feedback(decision_id, quality, cost)
        if caller and not caller.admin and self.owners:
            owner = await self.owners.owner(decision_id)
            if owner and owner != caller.name:
                raise PermissionDenied(f"decision {decision_id} is tenant {owner!r}'s; tenant {caller.name!r} "
                                       "may not rate it")
        rating = events_pb2.Rating(rating_id=str(uuid.uuid4()), decision_id=decision_id,
                                   quality=quality, source=source or "user", ts_ms=now_ms(),
                                   tenant=caller.name if caller and not caller.admin else "")
        if cost is not None:
            rating.cost = cost
        await self._send(self.s.ratings_topic, decision_id, rating)
        return rating.rating_id

    def expert_updates(self) -> dict[str, int]:
        return dict(self.policies.serving.policy.counts)
