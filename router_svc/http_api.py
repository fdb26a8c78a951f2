"""The OpenAI-compatible HTTP door: the same RouterCore as gRPC, behind a base-URL change.

`POST /v1/chat/completions` routes a chat (model `bandit-router`, or
`bandit-router:<cost_weight>`, or an expert's name to bypass routing), `GET /v1/models`,
`POST /v1/feedback` (decision id, quality, cost), `GET /healthz`, and the live dashboard
at `/dashboard/` (dashboard.py) when a board is given. Routing options ride in
the request body's extra fields (`tenant`, `cost_weight`, `allowed_experts`, `max_cost`,
`max_latency_s`, `hints`, `metadata`); images come as OpenAI content parts (`image_url`
data URIs). The answer is OpenAI-shaped, with `usage`, the `cost`, the decision id as
`id` and in `x-decision-id`, and the answering expert in `x-routed-expert`. Errors are
OpenAI-shaped too: 400 naming the field, 404 for an unknown model, 429 with Retry-After
when the replica is at capacity, 503 when the event log is down, 504 past the deadline. `stream: true` answers in server-sent events in the
OpenAI chunk format, the expert's pieces passed on as they reach the router (time to first
token is the expert's); an error before the first piece is an ordinary HTTP error, one
after it an `error` event in the stream.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import math
import socket
import time
from pathlib import Path

import grpc
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from proto import router_pb2

from .core import RouterCore, Routed
from .dashboard import Board
from .auth import Authenticator, Tenant
from .errors import InvalidRequest, RoutingError

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
ROUTER_MODEL = "bandit-router"
STATUS = {grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.NOT_FOUND: 404,
          grpc.StatusCode.UNAUTHENTICATED: 401, grpc.StatusCode.PERMISSION_DENIED: 403,
          grpc.StatusCode.RESOURCE_EXHAUSTED: 429, grpc.StatusCode.UNAVAILABLE: 503,
          grpc.StatusCode.DEADLINE_EXCEEDED: 504}
OPTION_FIELDS = ("tenant", "cost_weight", "allowed_experts", "max_cost", "max_latency_s", "hints", "metadata")


class HTTPError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.param, self.code = status, param, code


def error_response(status: int, message: str, param: str | None = None, code: str | None = None,
                   headers: dict | None = None) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}},
                        status_code=status, headers=headers)


def parse_model(model, catalog) -> tuple[float | None, list[str]]:
    """(cost weight or None, experts to restrict to) from the `model` field."""
    if not isinstance(model, str) or not model:
        raise HTTPError(400, "model is required: 'bandit-router', 'bandit-router:<cost_weight>' or an expert's name",
                        "model")
    if model == ROUTER_MODEL:
        return None, []
    if model.startswith(ROUTER_MODEL + ":"):
        try:
            weight = float(model.split(":", 1)[1])
        except ValueError:
            weight = math.nan
        if not (math.isfinite(weight) and weight >= 0):
            raise HTTPError(400, f"model {model!r}: the cost weight after ':' must be a number >= 0", "model")
        return weight, []
    if model in catalog:
        return None, [model]
    raise HTTPError(404, f"The model {model!r} does not exist; models: {[ROUTER_MODEL, *catalog.names]}",
                    "model", "model_not_found")


def parse_messages(messages) -> tuple[str, list[router_pb2.ContentPart]]:
    """The query (the chat as text) and its image parts."""
    if not isinstance(messages, list) or not messages:
        raise HTTPError(400, "messages must be a non-empty list", "messages")
    turns, parts = [], []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant", "developer", "tool"):
            raise HTTPError(400, f"messages[{i}] must be an object with a role", f"messages[{i}]")
        content = m.get("content")
        if isinstance(content, str):
            text = content
        elif isinstance(content, list):
            texts = []
            for j, c in enumerate(content):
                where = f"messages[{i}].content[{j}]"
                kind = c.get("type") if isinstance(c, dict) else None
                if kind == "text" and isinstance(c.get("text"), str):
                    texts.append(c["text"])
                elif kind == "image_url":
                    parts.append(data_uri_part(c.get("image_url"), where))
                else:
                    raise HTTPError(400, f"{where}: expected a text or image_url part", where)
            text = "\n".join(texts)
        elif content is None:
            text = ""
        else:
            raise HTTPError(400, f"messages[{i}].content must be a string or a list of parts", f"messages[{i}].content")
        turns.append((m["role"], text))
    if len(turns) == 1:
        return turns[0][1], parts
    return "\n\n".join(f"{role}: {text}" for role, text in turns if text), parts


def data_uri_part(image_url, where: str) -> router_pb2.ContentPart:
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    if not isinstance(url, str) or not url.startswith("data:") or ";base64," not in url:
        raise HTTPError(400, f"{where}: image_url must be a data: URI with base64 bytes (nothing outside can be "
                             "fetched)", where)
    head, b64 = url[5:].split(";base64,", 1)
    try:
        data = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise HTTPError(400, f"{where}: image_url is not valid base64", where) from None
    return router_pb2.ContentPart(media_type=head, data=data, name=where)


def route_options(body: dict, weight: float | None, only: list[str]) -> router_pb2.RouteOptions:
    opts = router_pb2.RouteOptions()
    try:
        for name in OPTION_FIELDS:
            if name not in body or body[name] is None:
                continue
            value = body[name]
            if name in ("hints", "metadata"):
                if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                    raise HTTPError(400, f"{name} must map names to strings", name)
                getattr(opts, name).update(value)
            elif name == "allowed_experts":
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise HTTPError(400, "allowed_experts must be a list of expert names", name)
                opts.allowed_experts.extend(value)
            elif name == "tenant":
                if not isinstance(value, str):
                    raise HTTPError(400, "tenant must be a string", name)
                opts.tenant = value
            else:
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise HTTPError(400, f"{name} must be a number", name)
                setattr(opts, name, float(value))
    except (TypeError, ValueError) as exc:
        raise HTTPError(400, f"bad routing option: {exc}") from None
    if weight is not None:
        opts.cost_weight = weight
    if only:
        if opts.allowed_experts and only[0] not in opts.allowed_experts:
            raise HTTPError(400, f"model {only[0]!r} is not among allowed_experts", "allowed_experts")
        del opts.allowed_experts[:]
        opts.allowed_experts.extend(only)
    return opts


def completion(routed: Routed, created: int) -> dict:
    ev, res = routed.decision.event, routed.result
    return {"id": ev.decision_id, "object": "chat.completion", "created": created, "model": res.expert,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": res.answer}}],
            "usage": {"prompt_tokens": res.input_tokens, "completion_tokens": res.output_tokens,
                      "total_tokens": res.input_tokens + res.output_tokens},
            "cost": res.cost,
            "bandit_router": {"decision_id": ev.decision_id, "expert": res.expert, "chosen_expert": ev.chosen_expert,
                              "fallback": res.fallback, "propensity": ev.propensity,
                              "policy_version": ev.policy_version}}


def remainder(answer: str, streamed: str, decision_id: str) -> str:
    """What the final answer adds to what was streamed: all of it from a backend that does
    not stream, the tail after a piece that went missing."""
    if answer.startswith(streamed):
        return answer[len(streamed):]
    log.warning("decision %s: streamed text differs from the final answer", decision_id)
    return ""


def routing_error(exc: RoutingError) -> JSONResponse:
    headers = {"x-decision-id": exc.decision_id} if exc.decision_id else {}
    if exc.retry_after_s:
        headers["retry-after"] = str(math.ceil(exc.retry_after_s))
    if exc.code == grpc.StatusCode.UNAUTHENTICATED:
        headers["www-authenticate"] = "Bearer"
    return error_response(STATUS.get(exc.code, 500), str(exc), headers=headers or None)


def routed_headers(routed: Routed) -> dict[str, str]:
    return {"x-decision-id": routed.decision.event.decision_id, "x-routed-expert": routed.result.expert}


def sse(events) -> bytes:
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)


class HTTPDoor:
    def __init__(self, core: RouterCore, board: Board | None = None):
        self.core, self.board = core, board
        routes = [
            Route("/v1/chat/completions", self.chat, methods=["POST"]),
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/v1/feedback", self.feedback, methods=["POST"]),
            Route("/healthz", self.health, methods=["GET"]),
        ]
        if board is not None:
            routes += [
                Route("/dashboard", lambda request: RedirectResponse("/dashboard/"), methods=["GET"]),
                Route("/dashboard/", lambda request: FileResponse(STATIC / "dashboard.html"), methods=["GET"]),
                Route("/dashboard/data", self.dashboard_data, methods=["GET"]),
                Mount("/dashboard/static", StaticFiles(directory=STATIC), name="static"),
            ]
        self.app = Starlette(routes=routes, exception_handlers={404: self.not_found, 405: self.not_allowed})

    async def not_found(self, request: Request, exc) -> JSONResponse:
        return error_response(404, f"no route {request.url.path}", code="not_found")

    async def not_allowed(self, request: Request, exc) -> JSONResponse:
        return error_response(405, f"{request.method} is not allowed on {request.url.path}")

    def _caller(self, request: Request) -> Tenant | None:
        return self.core.auth.caller(request.headers.get("authorization"))

    async def _body(self, request: Request) -> dict:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise HTTPError(400, "the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise HTTPError(400, "the body must be a JSON object")
        return body

    async def chat(self, request: Request) -> Response:
        try:
            body = await self._body(request)
            caller = self._caller(request)
            weight, only = parse_model(body.get("model"), self.core.catalog)
            query, parts = parse_messages(body.get("messages"))
            opts = route_options(body, weight, only)
            Authenticator.act_for(caller, opts)
            timeout_s = self.core.s.default_timeout_ms / 1000.0
            if body.get("stream"):
                return await self._stream(query, opts, timeout_s, parts)
            routed = await self.core.route(query, opts, timeout_s, parts)
        except HTTPError as exc:
            return error_response(exc.status, str(exc), exc.param, exc.code)
        except RoutingError as exc:
            return routing_error(exc)
        return JSONResponse(completion(routed, int(time.time())), headers=routed_headers(routed))

    async def _stream(self, query: str, opts, timeout_s: float, parts) -> Response:
        """Answer once the first piece (or the whole answer, or an error) is in, then pass
        the rest on as it comes."""
        items = self.core.route_stream(query, opts, timeout_s, parts)
        head = await anext(items)                 # a RoutingError here is an ordinary HTTP error
        if isinstance(head, Routed):
            did, expert = head.decision.event.decision_id, head.result.expert
        else:
            did, expert = head.decision_id, head.expert
        created = int(time.time())
        base = {"id": did, "object": "chat.completion.chunk", "created": created, "model": expert}

        def chunk(delta: dict, **extra) -> bytes:
            return sse([{**base, "choices": [{"index": 0, "delta": delta, **extra.pop("choice", {})}], **extra}])

        async def events():
            yield chunk({"role": "assistant", "content": ""})
            sent, item = [], head
            try:
                while not isinstance(item, Routed):
                    sent.append(item.answer)
                    yield chunk({"content": item.answer})
                    item = await anext(items)
            except RoutingError as exc:
                yield sse([{"error": {"message": str(exc), "type": "server_error", "param": None,
                                      "code": exc.code.name.lower()}}]) + b"data: [DONE]\n\n"
                return
            rest = remainder(item.result.answer, "".join(sent), did)
            if rest:
                yield chunk({"content": rest})
            done = completion(item, created)
            yield chunk({}, choice={"finish_reason": "stop"}, usage=done["usage"], cost=done["cost"]) \
                + b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"x-decision-id": did, "x-routed-expert": expert})

    async def models(self, request: Request) -> JSONResponse:
        try:
            self._caller(request)
        except RoutingError as exc:
            return routing_error(exc)
        data = [{"id": ROUTER_MODEL, "object": "model", "created": 0, "owned_by": "bandit-router"}]
        data += [{"id": e.name, "object": "model", "created": 0, "owned_by": e.backend} for e in self.core.catalog]
        return JSONResponse({"object": "list", "data": data})

    async def feedback(self, request: Request) -> JSONResponse:
        try:
            caller = self._caller(request)
            body = await self._body(request)
            quality, cost = body.get("quality"), body.get("cost")
            for name, v in (("quality", quality), ("cost", cost)):
                if (v is not None or name == "quality") and (isinstance(v, bool) or not isinstance(v, (int, float))):
                    raise HTTPError(400, f"{name} must be a number", name)
            did = body.get("decision_id")
            if not isinstance(did, str):
                raise HTTPError(400, "decision_id must be a string", "decision_id")
            rating_id = await self.core.feedback(did, float(quality), str(body.get("source") or "user"),
                                                 None if cost is None else float(cost), caller)
        except HTTPError as exc:
            return error_response(exc.status, str(exc), exc.param, exc.code)
        except InvalidRequest as exc:
            return error_response(400, str(exc))
        except RoutingError as exc:
            return routing_error(exc)
        return JSONResponse({"rating_id": rating_id, "decision_id": did})

    async def dashboard_data(self, request: Request) -> JSONResponse:
        """Every tenant's traffic: with auth on, for admin keys only."""
        try:
            Authenticator.require_admin(self._caller(request))
        except RoutingError as exc:
            return routing_error(exc)
        return JSONResponse(self.board.snapshot(), headers={"cache-control": "no-store"})

    async def health(self, request: Request) -> JSONResponse:
        serving = self.core.policies.serving
        return JSONResponse({"status": "ok", "router": self.core.s.router_id, "policy": serving.name,
                             "policy_version": serving.version,
                             "shadows": sorted(n for n in self.core.policies.lives if n != serving.name)})


async def start_http(core: RouterCore, host: str, port: int, board: Board | None = None):
    """Serve the door with uvicorn in this event loop (HTTPS with the settings' TLS files);
    returns (server, task, bound port)."""
    import ssl

    import uvicorn

    s = core.s
    tls = dict(ssl_certfile=str(s.tls_cert_file), ssl_keyfile=str(s.tls_key_file)) if s.tls_cert_file else {}
    if s.tls_client_ca_file:
        tls.update(ssl_ca_certs=str(s.tls_client_ca_file), ssl_cert_reqs=ssl.CERT_REQUIRED)
    server = uvicorn.Server(uvicorn.Config(HTTPDoor(core, board).app, host=host, port=port, log_level="warning",
                                           lifespan="off", **tls))
    task = asyncio.create_task(server.serve(sockets=[shared_socket(host, port)]), name="http-door")
    while not server.started:
        if task.done():
            task.result()                          # raises why it could not start
            raise RuntimeError("the HTTP door stopped before it started")
        await asyncio.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    return server, task, bound


def shared_socket(host: str, port: int) -> socket.socket:
    """A listening socket bound with SO_REUSEPORT, as the gRPC port is: router processes on
    one machine share the door's port too, the kernel spreading connections among them."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock
