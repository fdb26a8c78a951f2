"""The gRPC face of the router: a thin servicer over RouterCore, health and reflection.

Domain errors become gRPC status codes with a message; nothing else leaks out.
"""
from __future__ import annotations

import logging
import time

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from proto import events_pb2, router_pb2, router_pb2_grpc

from . import metrics
from .core import RouterCore
from .errors import RoutingError

log = logging.getLogger(__name__)
SERVICE = router_pb2.DESCRIPTOR.services_by_name["Router"].full_name


def _handled(method: str):
    """Map RoutingError to its status; count every call by outcome."""
    def wrap(fn):
        async def call(self, request, context: grpc.aio.ServicerContext):
            try:
                reply = await fn(self, request, context)
            except RoutingError as exc:
                metrics.REQUESTS.labels(method, exc.code.name).inc()
                if exc.decision_id:
                    context.set_trailing_metadata((("decision-id", exc.decision_id),))
                await context.abort(exc.code, str(exc))
            except Exception:
                metrics.REQUESTS.labels(method, "INTERNAL").inc()
                log.exception("%s failed", method)
                await context.abort(grpc.StatusCode.INTERNAL, f"{method} failed; see router logs")
            metrics.REQUESTS.labels(method, "OK").inc()
            return reply
        return call
    return wrap


class RouterServicer(router_pb2_grpc.RouterServicer):
    def __init__(self, core: RouterCore):
        self.core = core

    @_handled("Route")
    async def Route(self, request, context):
        started = time.monotonic()
        timeout_s = (request.timeout_ms or self.core.s.default_timeout_ms) / 1000.0
        remaining = context.time_remaining()
        if remaining is not None:
            timeout_s = min(timeout_s, remaining)
        routed = await self.core.route(request.query, request.options, timeout_s, request.parts)
        metrics.LATENCY.observe(time.monotonic() - started)
        ev, res = routed.decision.event, routed.result
        return router_pb2.RouteResponse(
            decision_id=ev.decision_id, expert=res.expert, chosen_expert=ev.chosen_expert,
            fallback=res.fallback, answer=res.answer, propensity=ev.propensity, cost=res.cost,
            latency_s=res.latency_s, policy_version=ev.policy_version)

    @_handled("Decide")
    async def Decide(self, request, context):
        decision = await self.core.decide(request.query, request.options, events_pb2.DECISION_MODE_DECIDE,
                                          request.parts)
        await self.core.log_decision(decision)
        ev = decision.event
        return router_pb2.DecideResponse(
            decision_id=ev.decision_id, expert=ev.chosen_expert, propensity=ev.propensity,
            probabilities=ev.probabilities, scores=ev.scores, policy_version=ev.policy_version)

    @_handled("Feedback")
    async def Feedback(self, request, context):
        cost = request.cost if request.HasField("cost") else None
        rating_id = await self.core.feedback(request.decision_id, request.quality, request.source, cost)
        return router_pb2.FeedbackResponse(rating_id=rating_id)

    @_handled("ListExperts")
    async def ListExperts(self, request, context):
        updates = self.core.expert_updates()
        return router_pb2.ListExpertsResponse(
            experts=[router_pb2.ExpertInfo(
                name=e.name, backend=e.backend, modalities=e.modalities, price_per_call=e.price_per_call,
                price_per_input_token=e.price_per_input_token, price_per_output_token=e.price_per_output_token,
                max_concurrency=e.max_concurrency, premium=e.premium, updates=updates.get(e.name, 0))
                for e in self.core.catalog],
            policy_name=self.core.live.policy.name, policy_version=self.core.live.version,
            embedding_model=self.core.embedder.version)


async def start_grpc(core: RouterCore, host: str, port: int,
                     max_message_bytes: int = 4 * 2**20) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    """`max_message_bytes`: what a request may weigh (content parts included)."""
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", max_message_bytes)])
    router_pb2_grpc.add_RouterServicer_to_server(RouterServicer(core), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    for name in ("", SERVICE):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, bound, health_servicer
