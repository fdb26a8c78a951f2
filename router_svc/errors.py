"""Domain errors of the router, mapped to gRPC status codes by the servicer."""
from __future__ import annotations

import grpc


class RoutingError(Exception):
    code = grpc.StatusCode.INTERNAL

    def __init__(self, message: str, decision_id: str = ""):
        super().__init__(message)
        self.decision_id = decision_id


class InvalidRequest(RoutingError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class ExpertUnavailable(RoutingError):
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(RoutingError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotReady(RoutingError):
    code = grpc.StatusCode.UNAVAILABLE
