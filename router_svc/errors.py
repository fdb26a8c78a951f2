"""Domain errors of the router, mapped to gRPC status codes by the servicer."""
from __future__ import annotations

import grpc


class RoutingError(Exception):
    code = grpc.StatusCode.INTERNAL
    retry_after_s: float | None = None       # set where trying again later is the remedy

    def __init__(self, message: str, decision_id: str = "", retry_after_s: float | None = None):
        super().__init__(message)
        self.decision_id = decision_id
        if retry_after_s is not None:
            self.retry_after_s = retry_after_s


class InvalidRequest(RoutingError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class Unauthenticated(RoutingError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(RoutingError):
    code = grpc.StatusCode.PERMISSION_DENIED


class ExpertUnavailable(RoutingError):
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(RoutingError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotReady(RoutingError):
    code = grpc.StatusCode.UNAVAILABLE


class Overloaded(RoutingError):
    """More requests in flight than this replica takes (BR_MAX_IN_FLIGHT): shed, not queued."""
    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, retry_after_s: float):
        super().__init__(message, retry_after_s=retry_after_s)
