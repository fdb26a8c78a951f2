from proto import events_pb2 as _events_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RouteOptions(_message.Message):
    __slots__ = ("tenant", "modality", "cost_weight", "allowed_experts", "metadata", "max_cost", "max_latency_s", "hints")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class HintsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TENANT_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    COST_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_EXPERTS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    MAX_COST_FIELD_NUMBER: _ClassVar[int]
    MAX_LATENCY_S_FIELD_NUMBER: _ClassVar[int]
    HINTS_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    modality: str
    cost_weight: float
    allowed_experts: _containers.RepeatedScalarFieldContainer[str]
    metadata: _containers.ScalarMap[str, str]
    max_cost: float
    max_latency_s: float
    hints: _containers.ScalarMap[str, str]
    def __init__(self, tenant: _Optional[str] = ..., modality: _Optional[str] = ..., cost_weight: _Optional[float] = ..., allowed_experts: _Optional[_Iterable[str]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., max_cost: _Optional[float] = ..., max_latency_s: _Optional[float] = ..., hints: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ContentPart(_message.Message):
    __slots__ = ("media_type", "data", "name")
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    media_type: str
    data: bytes
    name: str
    def __init__(self, media_type: _Optional[str] = ..., data: _Optional[bytes] = ..., name: _Optional[str] = ...) -> None: ...

class RouteRequest(_message.Message):
    __slots__ = ("query", "options", "timeout_ms", "parts")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    query: str
    options: RouteOptions
    timeout_ms: int
    parts: _containers.RepeatedCompositeFieldContainer[ContentPart]
    def __init__(self, query: _Optional[str] = ..., options: _Optional[_Union[RouteOptions, _Mapping]] = ..., timeout_ms: _Optional[int] = ..., parts: _Optional[_Iterable[_Union[ContentPart, _Mapping]]] = ...) -> None: ...

class RouteChunk(_message.Message):
    __slots__ = ("decision_id", "expert", "text", "done")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    EXPERT_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    expert: str
    text: str
    done: RouteResponse
    def __init__(self, decision_id: _Optional[str] = ..., expert: _Optional[str] = ..., text: _Optional[str] = ..., done: _Optional[_Union[RouteResponse, _Mapping]] = ...) -> None: ...

class RouteResponse(_message.Message):
    __slots__ = ("decision_id", "expert", "chosen_expert", "fallback", "answer", "propensity", "cost", "latency_s", "policy_version")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    EXPERT_FIELD_NUMBER: _ClassVar[int]
    CHOSEN_EXPERT_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    PROPENSITY_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    LATENCY_S_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    expert: str
    chosen_expert: str
    fallback: bool
    answer: str
    propensity: float
    cost: float
    latency_s: float
    policy_version: int
    def __init__(self, decision_id: _Optional[str] = ..., expert: _Optional[str] = ..., chosen_expert: _Optional[str] = ..., fallback: _Optional[bool] = ..., answer: _Optional[str] = ..., propensity: _Optional[float] = ..., cost: _Optional[float] = ..., latency_s: _Optional[float] = ..., policy_version: _Optional[int] = ...) -> None: ...

class DecideRequest(_message.Message):
    __slots__ = ("query", "options", "parts")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    query: str
    options: RouteOptions
    parts: _containers.RepeatedCompositeFieldContainer[ContentPart]
    def __init__(self, query: _Optional[str] = ..., options: _Optional[_Union[RouteOptions, _Mapping]] = ..., parts: _Optional[_Iterable[_Union[ContentPart, _Mapping]]] = ...) -> None: ...

class DecideResponse(_message.Message):
    __slots__ = ("decision_id", "expert", "propensity", "probabilities", "scores", "policy_version")
    class ProbabilitiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class ScoresEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _events_pb2.ScoreParts
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_events_pb2.ScoreParts, _Mapping]] = ...) -> None: ...
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    EXPERT_FIELD_NUMBER: _ClassVar[int]
    PROPENSITY_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    expert: str
    propensity: float
    probabilities: _containers.ScalarMap[str, float]
    scores: _containers.MessageMap[str, _events_pb2.ScoreParts]
    policy_version: int
    def __init__(self, decision_id: _Optional[str] = ..., expert: _Optional[str] = ..., propensity: _Optional[float] = ..., probabilities: _Optional[_Mapping[str, float]] = ..., scores: _Optional[_Mapping[str, _events_pb2.ScoreParts]] = ..., policy_version: _Optional[int] = ...) -> None: ...

class FeedbackRequest(_message.Message):
    __slots__ = ("decision_id", "quality", "source", "cost")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    quality: float
    source: str
    cost: float
    def __init__(self, decision_id: _Optional[str] = ..., quality: _Optional[float] = ..., source: _Optional[str] = ..., cost: _Optional[float] = ...) -> None: ...

class FeedbackResponse(_message.Message):
    __slots__ = ("rating_id",)
    RATING_ID_FIELD_NUMBER: _ClassVar[int]
    rating_id: str
    def __init__(self, rating_id: _Optional[str] = ...) -> None: ...

class ListExpertsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ExpertInfo(_message.Message):
    __slots__ = ("name", "backend", "modalities", "price_per_call", "price_per_input_token", "price_per_output_token", "max_concurrency", "premium", "updates", "circuit")
    NAME_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    MODALITIES_FIELD_NUMBER: _ClassVar[int]
    PRICE_PER_CALL_FIELD_NUMBER: _ClassVar[int]
    PRICE_PER_INPUT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PRICE_PER_OUTPUT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    PREMIUM_FIELD_NUMBER: _ClassVar[int]
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    CIRCUIT_FIELD_NUMBER: _ClassVar[int]
    name: str
    backend: str
    modalities: _containers.RepeatedScalarFieldContainer[str]
    price_per_call: float
    price_per_input_token: float
    price_per_output_token: float
    max_concurrency: int
    premium: bool
    updates: int
    circuit: str
    def __init__(self, name: _Optional[str] = ..., backend: _Optional[str] = ..., modalities: _Optional[_Iterable[str]] = ..., price_per_call: _Optional[float] = ..., price_per_input_token: _Optional[float] = ..., price_per_output_token: _Optional[float] = ..., max_concurrency: _Optional[int] = ..., premium: _Optional[bool] = ..., updates: _Optional[int] = ..., circuit: _Optional[str] = ...) -> None: ...

class ListExpertsResponse(_message.Message):
    __slots__ = ("experts", "policy_name", "policy_version", "embedding_model")
    EXPERTS_FIELD_NUMBER: _ClassVar[int]
    POLICY_NAME_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_MODEL_FIELD_NUMBER: _ClassVar[int]
    experts: _containers.RepeatedCompositeFieldContainer[ExpertInfo]
    policy_name: str
    policy_version: int
    embedding_model: str
    def __init__(self, experts: _Optional[_Iterable[_Union[ExpertInfo, _Mapping]]] = ..., policy_name: _Optional[str] = ..., policy_version: _Optional[int] = ..., embedding_model: _Optional[str] = ...) -> None: ...
