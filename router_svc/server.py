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
from .core import RouterCore, Routed
from .auth import Authenticator, Tenant
from .errors import RoutingError
from .validation import check_timeout_ms

log = logging.getLogger(__name__)
SERVICE = router_pb2.DESCRIPTOR.services_by_name["Router"].full_name


async def _abort(method: str, exc: Exception, context: grpc.aio.ServicerContext):
    """A RoutingError as its status (with the decision id and retry-after as trailers);
    anything else as INTERNAL, logged."""
    if not isinstance(exc, RoutingError):
        metrics.REQUESTS.labels(method, "INTERNAL").inc()
        log.error("%s failed", method, exc_info=exc)
        await context.abort(grpc.StatusCode.INTERNAL, f"{method} failed; see router logs")
    metrics.REQUESTS.labels(method, exc.code.name).inc()
    trailers = ((("decision-id", exc.decision_id),) if exc.decision_id else ()) + \
        ((("retry-after-ms", str(int(exc.retry_after_s * 1000))),) if exc.retry_after_s else ())
    if trailers:
        context.set_trailing_metadata(trailers)
    await context.abort(exc.code, str(exc))


def _caller(core: RouterCore, context: grpc.aio.ServicerContext) -> Tenant | None:
    """The tenant whose key is in the call's `authorization` metadata (None with auth off)."""
    return core.auth.caller(dict(context.invocation_metadata() or ()).get("authorization"))


def _handled(method: str):
    """Authenticate, map errors to their status; count every call by outcome."""
    def wrap(fn):
        async def call(self, request, context: grpc.aio.ServicerContext):
            try:
                reply = await fn(self, request, context, _caller(self.core, context))
            except Exception as exc:
                await _abort(method, exc, context)
            metrics.REQUESTS.labels(method, "OK").inc()
            return reply
        return call
    return wrap


def _route_timeout(core: RouterCore, request, context) -> float:
    """The request's timeout_ms (or the default), and never past the client's own deadline."""
    timeout_s = check_timeout_ms(request.timeout_ms, core.s.default_timeout_ms, core.s.max_timeout_ms)
    remaining = context.time_remaining()
    return timeout_s if remaining is None else min(timeout_s, remaining)


def _route_response(routed) -> router_pb2.RouteResponse:
    ev, res = routed.decision.event, routed.result
    return router_pb2.RouteResponse(
        decision_id=ev.decision_id, expert=res.expert, chosen_expert=ev.chosen_expert,
        fallback=res.fallback, answer=res.answer, propensity=ev.propensity, cost=res.cost,
        latency_s=res.latency_s, policy_version=ev.policy_version)


class RouterServicer(router_pb2_grpc.RouterServicer):
    def __init__(self, core: RouterCore):
        self.core = core

    @_handled("Route")
    async def Route(self, request, context, caller):
        Authenticator.act_for(caller, request.options)
        started = time.monotonic()
        routed = await self.core.route(request.query, request.options, _route_timeout(self.core, request, context),
                                       request.parts)
        metrics.LATENCY.observe(time.monotonic() - started)
        return _route_response(routed)

    async def RouteStream(self, request, context):
        """The answer's pieces as RouteChunks as they arrive, the RouteResponse last. An error
        before the first piece is the call's status, as for Route; once pieces have gone out
        there is no fallback (see RouterCore), and an error ends the stream with its status."""
        started = time.monotonic()
        try:
            Authenticator.act_for(_caller(self.core, context), request.options)
            async for item in self.core.route_stream(request.query, request.options,
                                                     _route_timeout(self.core, request, context), request.parts):
                if isinstance(item, Routed):
                    metrics.LATENCY.observe(time.monotonic() - started)
                    yield router_pb2.RouteChunk(decision_id=item.decision.event.decision_id,
                                                expert=item.result.expert, done=_route_response(item))
                else:
                    yield router_pb2.RouteChunk(decision_id=item.decision_id, expert=item.expert, text=item.answer)
        except Exception as exc:
            await _abort("RouteStream", exc, context)
        metrics.REQUESTS.labels("RouteStream", "OK").inc()

    @_handled("Decide")
    async def Decide(self, request, context, caller):
        Authenticator.act_for(caller, request.options)
        decision = await self.core.decide(request.query, request.options, events_pb2.DECISION_MODE_DECIDE,
                                          request.parts)
        await self.core.log_decision(decision)
        ev = decision.event
        return router_pb2.DecideResponse(
            decision_id=ev.decision_id, expert=ev.chosen_expert, propensity=ev.propensity,
            probabilities=ev.probabilities, scores=ev.scores, policy_version=ev.policy_version)

    @_handled("Feedback")
    async def Feedback(self, request, context, caller):
        cost = request.cost if request.HasField("cost") else None
        rating_id = await self.core.feedback(request.decision_id, request.quality, request.source, cost, caller)
        return router_pb2.FeedbackResponse(rating_id=rating_id)

    @_handled("ListExperts")
    async def ListExperts(self, request, context, caller):
        updates = self.core.expert_updates()
        return router_pb2.ListExpertsResponse(
            experts=[router_pb2.ExpertInfo(
                name=e.name, backend=e.backend, modalities=e.modalities, price_per_call=e.price_per_call,
                price_per_input_token=e.price_per_input_token, price_per_output_token=e.price_per_output_token,
                max_concurrency=e.max_concurrency, premium=e.premium, updates=updates.get(e.name, 0),
                circuit=self.core.breakers.state(e.name))
                for e in self.core.catalog],
            policy_name=self.core.policies.serving.name, policy_version=self.core.policies.serving.version,
            embedding_model=self.core.embedder.version)


def server_credentials(s) -> grpc.ServerCredentials | None:
    """TLS from the settings' PEM files (None: plaintext); a client CA makes it mutual."""
    if not s.tls_cert_file:
        return None
    ca = s.tls_client_ca_file.read_bytes() if s.tls_client_ca_file else None
    return grpc.ssl_server_credentials([(s.tls_key_file.read_bytes(), s.tls_cert_file.read_bytes())],
                                       root_certificates=ca, require_client_auth=ca is not None)


async def start_grpc(core: RouterCore, host: str, port: int, max_message_bytes: int = 4 * 2**20,
                     credentials: grpc.ServerCredentials | None = None
                     ) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    """`max_message_bytes`: what a request may weigh (content parts included); `credentials`:
    TLS (the port then speaks nothing else)."""
    # SO_REUSEPORT: several router processes may listen on one port, the kernel spreading
    # connections among them (one way to scale out on a machine; bench/load.py measures it).
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", max_message_bytes),
                                      ("grpc.so_reuseport", 1)])
    router_pb2_grpc.add_RouterServicer_to_server(RouterServicer(core), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    bound = server.add_secure_port(f"{host}:{port}", credentials) if credentials else \
        server.add_insecure_port(f"{host}:{port}")
    await server.start()
    for name in ("", SERVICE):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, bound, health_servicer
