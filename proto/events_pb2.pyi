from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DecisionMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_MODE_UNSPECIFIED: _ClassVar[DecisionMode]
    DECISION_MODE_ROUTE: _ClassVar[DecisionMode]
    DECISION_MODE_DECIDE: _ClassVar[DecisionMode]
DECISION_MODE_UNSPECIFIED: DecisionMode
DECISION_MODE_ROUTE: DecisionMode
DECISION_MODE_DECIDE: DecisionMode

class ScoreParts(_message.Message):
    __slots__ = ("estimated_quality", "estimated_cost", "exploration_bonus", "score")
    ESTIMATED_QUALITY_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_COST_FIELD_NUMBER: _ClassVar[int]
    EXPLORATION_BONUS_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    estimated_quality: float
    estimated_cost: float
    exploration_bonus: float
    score: float
    def __init__(self, estimated_quality: _Optional[float] = ..., estimated_cost: _Optional[float] = ..., exploration_bonus: _Optional[float] = ..., score: _Optional[float] = ...) -> None: ...

class DecisionEvent(_message.Message):
    __slots__ = ("decision_id", "ts_ms", "mode", "tenant", "modality", "context", "chosen_expert", "propensity", "probabilities", "scores", "policy_name", "policy_version", "embedding_model", "feature_version", "cost_weight", "router_id", "query_chars", "hints", "prices", "parts", "shadows", "embed_ms", "decide_ms")
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
        value: ScoreParts
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ScoreParts, _Mapping]] = ...) -> None: ...
    class HintsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class PricesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class ShadowsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ShadowChoice
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ShadowChoice, _Mapping]] = ...) -> None: ...
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    TS_MS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    CHOSEN_EXPERT_FIELD_NUMBER: _ClassVar[int]
    PROPENSITY_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    POLICY_NAME_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_MODEL_FIELD_NUMBER: _ClassVar[int]
    FEATURE_VERSION_FIELD_NUMBER: _ClassVar[int]
    COST_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    ROUTER_ID_FIELD_NUMBER: _ClassVar[int]
    QUERY_CHARS_FIELD_NUMBER: _ClassVar[int]
    HINTS_FIELD_NUMBER: _ClassVar[int]
    PRICES_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    SHADOWS_FIELD_NUMBER: _ClassVar[int]
    EMBED_MS_FIELD_NUMBER: _ClassVar[int]
    DECIDE_MS_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    ts_ms: int
    mode: DecisionMode
    tenant: str
    modality: str
    context: _containers.RepeatedScalarFieldContainer[float]
    chosen_expert: str
    propensity: float
    probabilities: _containers.ScalarMap[str, float]
    scores: _containers.MessageMap[str, ScoreParts]
    policy_name: str
    policy_version: int
    embedding_model: str
    feature_version: str
    cost_weight: float
    router_id: str
    query_chars: int
    hints: _containers.ScalarMap[str, str]
    prices: _containers.ScalarMap[str, float]
    parts: _containers.RepeatedCompositeFieldContainer[PartRef]
    shadows: _containers.MessageMap[str, ShadowChoice]
    embed_ms: float
    decide_ms: float
    def __init__(self, decision_id: _Optional[str] = ..., ts_ms: _Optional[int] = ..., mode: _Optional[_Union[DecisionMode, str]] = ..., tenant: _Optional[str] = ..., modality: _Optional[str] = ..., context: _Optional[_Iterable[float]] = ..., chosen_expert: _Optional[str] = ..., propensity: _Optional[float] = ..., probabilities: _Optional[_Mapping[str, float]] = ..., scores: _Optional[_Mapping[str, ScoreParts]] = ..., policy_name: _Optional[str] = ..., policy_version: _Optional[int] = ..., embedding_model: _Optional[str] = ..., feature_version: _Optional[str] = ..., cost_weight: _Optional[float] = ..., router_id: _Optional[str] = ..., query_chars: _Optional[int] = ..., hints: _Optional[_Mapping[str, str]] = ..., prices: _Optional[_Mapping[str, float]] = ..., parts: _Optional[_Iterable[_Union[PartRef, _Mapping]]] = ..., shadows: _Optional[_Mapping[str, ShadowChoice]] = ..., embed_ms: _Optional[float] = ..., decide_ms: _Optional[float] = ...) -> None: ...

class ShadowChoice(_message.Message):
    __slots__ = ("expert", "probabilities", "policy_version")
    class ProbabilitiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    EXPERT_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    expert: str
    probabilities: _containers.ScalarMap[str, float]
    policy_version: int
    def __init__(self, expert: _Optional[str] = ..., probabilities: _Optional[_Mapping[str, float]] = ..., policy_version: _Optional[int] = ...) -> None: ...

class PartRef(_message.Message):
    __slots__ = ("sha256", "media_type", "size", "name")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    media_type: str
    size: int
    name: str
    def __init__(self, sha256: _Optional[str] = ..., media_type: _Optional[str] = ..., size: _Optional[int] = ..., name: _Optional[str] = ...) -> None: ...

class ExpertRequest(_message.Message):
    __slots__ = ("request_id", "decision_id", "expert", "attempt", "fallback", "query", "modality", "metadata", "deadline_ms", "reply_topic", "parts", "stream")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    EXPERT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_MS_FIELD_NUMBER: _ClassVar[int]
    REPLY_TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    decision_id: str
    expert: str
    attempt: int
    fallback: bool
    query: str
    modality: str
    metadata: _containers.ScalarMap[str, str]
    deadline_ms: int
    reply_topic: str
    parts: _containers.RepeatedCompositeFieldContainer[PartRef]
    stream: bool
    def __init__(self, request_id: _Optional[str] = ..., decision_id: _Optional[str] = ..., expert: _Optional[str] = ..., attempt: _Optional[int] = ..., fallback: _Optional[bool] = ..., query: _Optional[str] = ..., modality: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., deadline_ms: _Optional[int] = ..., reply_topic: _Optional[str] = ..., parts: _Optional[_Iterable[_Union[PartRef, _Mapping]]] = ..., stream: _Optional[bool] = ...) -> None: ...

class ExpertResult(_message.Message):
    __slots__ = ("request_id", "decision_id", "expert", "attempt", "fallback", "ok", "answer", "error", "latency_s", "input_tokens", "output_tokens", "cost", "ts_ms", "producer", "partial", "seq")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    EXPERT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    LATENCY_S_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    TS_MS_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    decision_id: str
    expert: str
    attempt: int
    fallback: bool
    ok: bool
    answer: str
    error: str
    latency_s: float
    input_tokens: int
    output_tokens: int
    cost: float
    ts_ms: int
    producer: str
    partial: bool
    seq: int
    def __init__(self, request_id: _Optional[str] = ..., decision_id: _Optional[str] = ..., expert: _Optional[str] = ..., attempt: _Optional[int] = ..., fallback: _Optional[bool] = ..., ok: _Optional[bool] = ..., answer: _Optional[str] = ..., error: _Optional[str] = ..., latency_s: _Optional[float] = ..., input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., cost: _Optional[float] = ..., ts_ms: _Optional[int] = ..., producer: _Optional[str] = ..., partial: _Optional[bool] = ..., seq: _Optional[int] = ...) -> None: ...

class Rating(_message.Message):
    __slots__ = ("rating_id", "decision_id", "quality", "source", "cost", "ts_ms", "tenant")
    RATING_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    TS_MS_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    rating_id: str
    decision_id: str
    quality: float
    source: str
    cost: float
    ts_ms: int
    tenant: str
    def __init__(self, rating_id: _Optional[str] = ..., decision_id: _Optional[str] = ..., quality: _Optional[float] = ..., source: _Optional[str] = ..., cost: _Optional[float] = ..., ts_ms: _Optional[int] = ..., tenant: _Optional[str] = ...) -> None: ...

class RewardEvent(_message.Message):
    __slots__ = ("reward_id", "decision_id", "expert", "context", "quality", "cost", "cost_weight", "reward", "propensity", "policy_name", "policy_version", "expert_failed", "ts_ms")
    REWARD_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    EXPERT_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    COST_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    REWARD_FIELD_NUMBER: _ClassVar[int]
    PROPENSITY_FIELD_NUMBER: _ClassVar[int]
    POLICY_NAME_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    EXPERT_FAILED_FIELD_NUMBER: _ClassVar[int]
    TS_MS_FIELD_NUMBER: _ClassVar[int]
    reward_id: str
    decision_id: str
    expert: str
    context: _containers.RepeatedScalarFieldContainer[float]
    quality: float
    cost: float
    cost_weight: float
    reward: float
    propensity: float
    policy_name: str
    policy_version: int
    expert_failed: bool
    ts_ms: int
    def __init__(self, reward_id: _Optional[str] = ..., decision_id: _Optional[str] = ..., expert: _Optional[str] = ..., context: _Optional[_Iterable[float]] = ..., quality: _Optional[float] = ..., cost: _Optional[float] = ..., cost_weight: _Optional[float] = ..., reward: _Optional[float] = ..., propensity: _Optional[float] = ..., policy_name: _Optional[str] = ..., policy_version: _Optional[int] = ..., expert_failed: _Optional[bool] = ..., ts_ms: _Optional[int] = ...) -> None: ...

class DeadLetter(_message.Message):
    __slots__ = ("source_topic", "partition", "offset", "reason", "payload", "decision_id", "ts_ms", "component")
    SOURCE_TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    TS_MS_FIELD_NUMBER: _ClassVar[int]
    COMPONENT_FIELD_NUMBER: _ClassVar[int]
    source_topic: str
    partition: int
    offset: int
    reason: str
    payload: bytes
    decision_id: str
    ts_ms: int
    component: str
    def __init__(self, source_topic: _Optional[str] = ..., partition: _Optional[int] = ..., offset: _Optional[int] = ..., reason: _Optional[str] = ..., payload: _Optional[bytes] = ..., decision_id: _Optional[str] = ..., ts_ms: _Optional[int] = ..., component: _Optional[str] = ...) -> None: ...

class JoinState(_message.Message):
    __slots__ = ("decision", "result", "rating", "rewarded", "expired", "first_seen_ms", "seen_event_ids", "reward", "waiting")
    DECISION_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    RATING_FIELD_NUMBER: _ClassVar[int]
    REWARDED_FIELD_NUMBER: _ClassVar[int]
    EXPIRED_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_MS_FIELD_NUMBER: _ClassVar[int]
    SEEN_EVENT_IDS_FIELD_NUMBER: _ClassVar[int]
    REWARD_FIELD_NUMBER: _ClassVar[int]
    WAITING_FIELD_NUMBER: _ClassVar[int]
    decision: DecisionEvent
    result: ExpertResult
    rating: Rating
    rewarded: bool
    expired: bool
    first_seen_ms: int
    seen_event_ids: _containers.RepeatedScalarFieldContainer[str]
    reward: RewardEvent
    waiting: _containers.RepeatedCompositeFieldContainer[Rating]
    def __init__(self, decision: _Optional[_Union[DecisionEvent, _Mapping]] = ..., result: _Optional[_Union[ExpertResult, _Mapping]] = ..., rating: _Optional[_Union[Rating, _Mapping]] = ..., rewarded: _Optional[bool] = ..., expired: _Optional[bool] = ..., first_seen_ms: _Optional[int] = ..., seen_event_ids: _Optional[_Iterable[str]] = ..., reward: _Optional[_Union[RewardEvent, _Mapping]] = ..., waiting: _Optional[_Iterable[_Union[Rating, _Mapping]]] = ...) -> None: ...

class AuditEvent(_message.Message):
    __slots__ = ("audit_id", "ts_ms", "action", "actor", "from_policy", "to_policy", "from_version", "to_version", "reason", "figures")
    class FiguresEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    AUDIT_ID_FIELD_NUMBER: _ClassVar[int]
    TS_MS_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    FROM_POLICY_FIELD_NUMBER: _ClassVar[int]
    TO_POLICY_FIELD_NUMBER: _ClassVar[int]
    FROM_VERSION_FIELD_NUMBER: _ClassVar[int]
    TO_VERSION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FIGURES_FIELD_NUMBER: _ClassVar[int]
    audit_id: str
    ts_ms: int
    action: str
    actor: str
    from_policy: str
    to_policy: str
    from_version: int
    to_version: int
    reason: str
    figures: _containers.ScalarMap[str, float]
    def __init__(self, audit_id: _Optional[str] = ..., ts_ms: _Optional[int] = ..., action: _Optional[str] = ..., actor: _Optional[str] = ..., from_policy: _Optional[str] = ..., to_policy: _Optional[str] = ..., from_version: _Optional[int] = ..., to_version: _Optional[int] = ..., reason: _Optional[str] = ..., figures: _Optional[_Mapping[str, float]] = ...) -> None: ...
