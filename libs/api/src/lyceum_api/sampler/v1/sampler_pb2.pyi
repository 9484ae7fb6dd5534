import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Category(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CATEGORY_UNSPECIFIED: _ClassVar[Category]
    CATEGORY_ABOVE: _ClassVar[Category]
    CATEGORY_OTHER: _ClassVar[Category]

class GatingMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GATING_MODE_UNSPECIFIED: _ClassVar[GatingMode]
    GATING_MODE_NONE: _ClassVar[GatingMode]
    GATING_MODE_FIXED: _ClassVar[GatingMode]
    GATING_MODE_RANDOM: _ClassVar[GatingMode]
    GATING_MODE_LEARNED: _ClassVar[GatingMode]

class DecodingStrategy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECODING_STRATEGY_UNSPECIFIED: _ClassVar[DecodingStrategy]
    DECODING_STRATEGY_GREEDY: _ClassVar[DecodingStrategy]
    DECODING_STRATEGY_SAMPLE: _ClassVar[DecodingStrategy]
    DECODING_STRATEGY_BEAM: _ClassVar[DecodingStrategy]
CATEGORY_UNSPECIFIED: Category
CATEGORY_ABOVE: Category
CATEGORY_OTHER: Category
GATING_MODE_UNSPECIFIED: GatingMode
GATING_MODE_NONE: GatingMode
GATING_MODE_FIXED: GatingMode
GATING_MODE_RANDOM: GatingMode
GATING_MODE_LEARNED: GatingMode
DECODING_STRATEGY_UNSPECIFIED: DecodingStrategy
DECODING_STRATEGY_GREEDY: DecodingStrategy
DECODING_STRATEGY_SAMPLE: DecodingStrategy
DECODING_STRATEGY_BEAM: DecodingStrategy

class SamplingParams(_message.Message):
    __slots__ = ("temperature", "top_k", "top_p", "repetition_penalty", "presence_penalty", "frequency_penalty")
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    REPETITION_PENALTY_FIELD_NUMBER: _ClassVar[int]
    PRESENCE_PENALTY_FIELD_NUMBER: _ClassVar[int]
    FREQUENCY_PENALTY_FIELD_NUMBER: _ClassVar[int]
    temperature: float
    top_k: int
    top_p: float
    repetition_penalty: float
    presence_penalty: float
    frequency_penalty: float
    def __init__(self, temperature: _Optional[float] = ..., top_k: _Optional[int] = ..., top_p: _Optional[float] = ..., repetition_penalty: _Optional[float] = ..., presence_penalty: _Optional[float] = ..., frequency_penalty: _Optional[float] = ...) -> None: ...

class ChatMessage(_message.Message):
    __slots__ = ("role", "content")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    role: str
    content: str
    def __init__(self, role: _Optional[str] = ..., content: _Optional[str] = ...) -> None: ...

class TokenInfo(_message.Message):
    __slots__ = ("id", "text", "bytes", "is_valid_utf8")
    ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    IS_VALID_UTF8_FIELD_NUMBER: _ClassVar[int]
    id: int
    text: str
    bytes: bytes
    is_valid_utf8: bool
    def __init__(self, id: _Optional[int] = ..., text: _Optional[str] = ..., bytes: _Optional[bytes] = ..., is_valid_utf8: _Optional[bool] = ...) -> None: ...

class TokenProbability(_message.Message):
    __slots__ = ("token", "probability", "logprob")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    LOGPROB_FIELD_NUMBER: _ClassVar[int]
    token: TokenInfo
    probability: float
    logprob: float
    def __init__(self, token: _Optional[_Union[TokenInfo, _Mapping]] = ..., probability: _Optional[float] = ..., logprob: _Optional[float] = ...) -> None: ...

class OtherBucket(_message.Message):
    __slots__ = ("probability", "count", "top")
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    TOP_FIELD_NUMBER: _ClassVar[int]
    probability: float
    count: int
    top: _containers.RepeatedCompositeFieldContainer[TokenProbability]
    def __init__(self, probability: _Optional[float] = ..., count: _Optional[int] = ..., top: _Optional[_Iterable[_Union[TokenProbability, _Mapping]]] = ...) -> None: ...

class HistoryEntry(_message.Message):
    __slots__ = ("token", "probability", "category", "rank", "chosen_at", "from_other", "gating")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    CHOSEN_AT_FIELD_NUMBER: _ClassVar[int]
    FROM_OTHER_FIELD_NUMBER: _ClassVar[int]
    GATING_FIELD_NUMBER: _ClassVar[int]
    token: TokenInfo
    probability: float
    category: Category
    rank: int
    chosen_at: _timestamp_pb2.Timestamp
    from_other: bool
    gating: GatingStep
    def __init__(self, token: _Optional[_Union[TokenInfo, _Mapping]] = ..., probability: _Optional[float] = ..., category: _Optional[_Union[Category, str]] = ..., rank: _Optional[int] = ..., chosen_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., from_other: _Optional[bool] = ..., gating: _Optional[_Union[GatingStep, _Mapping]] = ...) -> None: ...

class ShownSettings(_message.Message):
    __slots__ = ("threshold", "params", "shown_at")
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    SHOWN_AT_FIELD_NUMBER: _ClassVar[int]
    threshold: float
    params: SamplingParams
    shown_at: _timestamp_pb2.Timestamp
    def __init__(self, threshold: _Optional[float] = ..., params: _Optional[_Union[SamplingParams, _Mapping]] = ..., shown_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Gating(_message.Message):
    __slots__ = ("mode", "modulation", "policy", "seed")
    MODE_FIELD_NUMBER: _ClassVar[int]
    MODULATION_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    mode: GatingMode
    modulation: float
    policy: str
    seed: int
    def __init__(self, mode: _Optional[_Union[GatingMode, str]] = ..., modulation: _Optional[float] = ..., policy: _Optional[str] = ..., seed: _Optional[int] = ...) -> None: ...

class GatingReport(_message.Message):
    __slots__ = ("mode", "policy", "gate_signal", "policy_lm", "lm_mismatch", "modulation", "seed")
    MODE_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    GATE_SIGNAL_FIELD_NUMBER: _ClassVar[int]
    POLICY_LM_FIELD_NUMBER: _ClassVar[int]
    LM_MISMATCH_FIELD_NUMBER: _ClassVar[int]
    MODULATION_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    mode: GatingMode
    policy: str
    gate_signal: bool
    policy_lm: str
    lm_mismatch: bool
    modulation: float
    seed: int
    def __init__(self, mode: _Optional[_Union[GatingMode, str]] = ..., policy: _Optional[str] = ..., gate_signal: _Optional[bool] = ..., policy_lm: _Optional[str] = ..., lm_mismatch: _Optional[bool] = ..., modulation: _Optional[float] = ..., seed: _Optional[int] = ...) -> None: ...

class GatingStep(_message.Message):
    __slots__ = ("modulation", "params", "gate_signal")
    MODULATION_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    GATE_SIGNAL_FIELD_NUMBER: _ClassVar[int]
    modulation: float
    params: SamplingParams
    gate_signal: float
    def __init__(self, modulation: _Optional[float] = ..., params: _Optional[_Union[SamplingParams, _Mapping]] = ..., gate_signal: _Optional[float] = ...) -> None: ...

class Session(_message.Message):
    __slots__ = ("session_id", "model", "prompt", "prompt_token_ids", "generated", "text", "context_len", "max_context_len", "created_at", "updated_at", "last_shown", "adapter", "gate_signal", "gating")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    GENERATED_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_LEN_FIELD_NUMBER: _ClassVar[int]
    MAX_CONTEXT_LEN_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_SHOWN_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_FIELD_NUMBER: _ClassVar[int]
    GATE_SIGNAL_FIELD_NUMBER: _ClassVar[int]
    GATING_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    model: str
    prompt: str
    prompt_token_ids: _containers.RepeatedScalarFieldContainer[int]
    generated: _containers.RepeatedCompositeFieldContainer[HistoryEntry]
    text: str
    context_len: int
    max_context_len: int
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    last_shown: ShownSettings
    adapter: str
    gate_signal: float
    gating: GatingReport
    def __init__(self, session_id: _Optional[str] = ..., model: _Optional[str] = ..., prompt: _Optional[str] = ..., prompt_token_ids: _Optional[_Iterable[int]] = ..., generated: _Optional[_Iterable[_Union[HistoryEntry, _Mapping]]] = ..., text: _Optional[str] = ..., context_len: _Optional[int] = ..., max_context_len: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_shown: _Optional[_Union[ShownSettings, _Mapping]] = ..., adapter: _Optional[str] = ..., gate_signal: _Optional[float] = ..., gating: _Optional[_Union[GatingReport, _Mapping]] = ...) -> None: ...

class CreateSessionRequest(_message.Message):
    __slots__ = ("model", "prompt", "max_live_sessions", "adapter", "gate_signal", "gating")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    MAX_LIVE_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_FIELD_NUMBER: _ClassVar[int]
    GATE_SIGNAL_FIELD_NUMBER: _ClassVar[int]
    GATING_FIELD_NUMBER: _ClassVar[int]
    model: str
    prompt: str
    max_live_sessions: int
    adapter: str
    gate_signal: float
    gating: Gating
    def __init__(self, model: _Optional[str] = ..., prompt: _Optional[str] = ..., max_live_sessions: _Optional[int] = ..., adapter: _Optional[str] = ..., gate_signal: _Optional[float] = ..., gating: _Optional[_Union[Gating, _Mapping]] = ...) -> None: ...

class CreateSessionResponse(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: Session
    def __init__(self, session: _Optional[_Union[Session, _Mapping]] = ...) -> None: ...

class GetSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class GetSessionResponse(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: Session
    def __init__(self, session: _Optional[_Union[Session, _Mapping]] = ...) -> None: ...

class SetPromptRequest(_message.Message):
    __slots__ = ("session_id", "prompt")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    prompt: str
    def __init__(self, session_id: _Optional[str] = ..., prompt: _Optional[str] = ...) -> None: ...

class SetPromptResponse(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: Session
    def __init__(self, session: _Optional[_Union[Session, _Mapping]] = ...) -> None: ...

class GetDistributionRequest(_message.Message):
    __slots__ = ("session_id", "threshold", "other_top_k", "params", "record_shown")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    OTHER_TOP_K_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    RECORD_SHOWN_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    threshold: float
    other_top_k: int
    params: SamplingParams
    record_shown: bool
    def __init__(self, session_id: _Optional[str] = ..., threshold: _Optional[float] = ..., other_top_k: _Optional[int] = ..., params: _Optional[_Union[SamplingParams, _Mapping]] = ..., record_shown: _Optional[bool] = ...) -> None: ...

class GetDistributionResponse(_message.Message):
    __slots__ = ("session_id", "above", "other", "threshold", "context_len", "gating")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    ABOVE_FIELD_NUMBER: _ClassVar[int]
    OTHER_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_LEN_FIELD_NUMBER: _ClassVar[int]
    GATING_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    above: _containers.RepeatedCompositeFieldContainer[TokenProbability]
    other: OtherBucket
    threshold: float
    context_len: int
    gating: GatingStep
    def __init__(self, session_id: _Optional[str] = ..., above: _Optional[_Iterable[_Union[TokenProbability, _Mapping]]] = ..., other: _Optional[_Union[OtherBucket, _Mapping]] = ..., threshold: _Optional[float] = ..., context_len: _Optional[int] = ..., gating: _Optional[_Union[GatingStep, _Mapping]] = ...) -> None: ...

class AppendTokenRequest(_message.Message):
    __slots__ = ("session_id", "token_id", "token_text", "from_other", "spin", "threshold", "params", "seed", "expected_context_len")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_TEXT_FIELD_NUMBER: _ClassVar[int]
    FROM_OTHER_FIELD_NUMBER: _ClassVar[int]
    SPIN_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_CONTEXT_LEN_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    token_id: int
    token_text: str
    from_other: bool
    spin: bool
    threshold: float
    params: SamplingParams
    seed: int
    expected_context_len: int
    def __init__(self, session_id: _Optional[str] = ..., token_id: _Optional[int] = ..., token_text: _Optional[str] = ..., from_other: _Optional[bool] = ..., spin: _Optional[bool] = ..., threshold: _Optional[float] = ..., params: _Optional[_Union[SamplingParams, _Mapping]] = ..., seed: _Optional[int] = ..., expected_context_len: _Optional[int] = ...) -> None: ...

class AppendTokenResponse(_message.Message):
    __slots__ = ("session", "appended")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    APPENDED_FIELD_NUMBER: _ClassVar[int]
    session: Session
    appended: HistoryEntry
    def __init__(self, session: _Optional[_Union[Session, _Mapping]] = ..., appended: _Optional[_Union[HistoryEntry, _Mapping]] = ...) -> None: ...

class UndoRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class UndoResponse(_message.Message):
    __slots__ = ("session", "removed")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    session: Session
    removed: HistoryEntry
    def __init__(self, session: _Optional[_Union[Session, _Mapping]] = ..., removed: _Optional[_Union[HistoryEntry, _Mapping]] = ...) -> None: ...

class DeleteSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class DeleteSessionResponse(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("model", "prompt", "strategy", "params", "max_new_tokens", "stop", "seed", "num_beams", "messages", "prompt_token_ids", "adapter", "gate_signal", "top_logprobs", "record", "subject", "gating")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    NUM_BEAMS_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_FIELD_NUMBER: _ClassVar[int]
    GATE_SIGNAL_FIELD_NUMBER: _ClassVar[int]
    TOP_LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    GATING_FIELD_NUMBER: _ClassVar[int]
    model: str
    prompt: str
    strategy: DecodingStrategy
    params: SamplingParams
    max_new_tokens: int
    stop: _containers.RepeatedScalarFieldContainer[str]
    seed: int
    num_beams: int
    messages: _containers.RepeatedCompositeFieldContainer[ChatMessage]
    prompt_token_ids: _containers.RepeatedScalarFieldContainer[int]
    adapter: str
    gate_signal: float
    top_logprobs: int
    record: bool
    subject: str
    gating: Gating
    def __init__(self, model: _Optional[str] = ..., prompt: _Optional[str] = ..., strategy: _Optional[_Union[DecodingStrategy, str]] = ..., params: _Optional[_Union[SamplingParams, _Mapping]] = ..., max_new_tokens: _Optional[int] = ..., stop: _Optional[_Iterable[str]] = ..., seed: _Optional[int] = ..., num_beams: _Optional[int] = ..., messages: _Optional[_Iterable[_Union[ChatMessage, _Mapping]]] = ..., prompt_token_ids: _Optional[_Iterable[int]] = ..., adapter: _Optional[str] = ..., gate_signal: _Optional[float] = ..., top_logprobs: _Optional[int] = ..., record: _Optional[bool] = ..., subject: _Optional[str] = ..., gating: _Optional[_Union[Gating, _Mapping]] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("token", "probability", "text", "finish_reason", "logprob", "top_logprobs", "prompt_tokens", "completion_tokens", "completion_id", "model", "gating_step", "gating")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    LOGPROB_FIELD_NUMBER: _ClassVar[int]
    TOP_LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    GATING_STEP_FIELD_NUMBER: _ClassVar[int]
    GATING_FIELD_NUMBER: _ClassVar[int]
    token: TokenInfo
    probability: float
    text: str
    finish_reason: str
    logprob: float
    top_logprobs: _containers.RepeatedCompositeFieldContainer[TokenProbability]
    prompt_tokens: int
    completion_tokens: int
    completion_id: str
    model: str
    gating_step: GatingStep
    gating: GatingReport
    def __init__(self, token: _Optional[_Union[TokenInfo, _Mapping]] = ..., probability: _Optional[float] = ..., text: _Optional[str] = ..., finish_reason: _Optional[str] = ..., logprob: _Optional[float] = ..., top_logprobs: _Optional[_Iterable[_Union[TokenProbability, _Mapping]]] = ..., prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., completion_id: _Optional[str] = ..., model: _Optional[str] = ..., gating_step: _Optional[_Union[GatingStep, _Mapping]] = ..., gating: _Optional[_Union[GatingReport, _Mapping]] = ...) -> None: ...

class ScoreRequest(_message.Message):
    __slots__ = ("model", "adapter", "prompt", "messages", "prompt_token_ids", "completion", "completion_token_ids", "gate_signal")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    GATE_SIGNAL_FIELD_NUMBER: _ClassVar[int]
    model: str
    adapter: str
    prompt: str
    messages: _containers.RepeatedCompositeFieldContainer[ChatMessage]
    prompt_token_ids: _containers.RepeatedScalarFieldContainer[int]
    completion: str
    completion_token_ids: _containers.RepeatedScalarFieldContainer[int]
    gate_signal: float
    def __init__(self, model: _Optional[str] = ..., adapter: _Optional[str] = ..., prompt: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[ChatMessage, _Mapping]]] = ..., prompt_token_ids: _Optional[_Iterable[int]] = ..., completion: _Optional[str] = ..., completion_token_ids: _Optional[_Iterable[int]] = ..., gate_signal: _Optional[float] = ...) -> None: ...

class ScoreResponse(_message.Message):
    __slots__ = ("tokens", "prompt_tokens", "completion_tokens", "sum_logprob", "model")
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SUM_LOGPROB_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    tokens: _containers.RepeatedCompositeFieldContainer[TokenProbability]
    prompt_tokens: int
    completion_tokens: int
    sum_logprob: float
    model: str
    def __init__(self, tokens: _Optional[_Iterable[_Union[TokenProbability, _Mapping]]] = ..., prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., sum_logprob: _Optional[float] = ..., model: _Optional[str] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelDescription(_message.Message):
    __slots__ = ("name", "kind", "vocab_size", "max_context_len", "loaded", "base", "gated")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    VOCAB_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_CONTEXT_LEN_FIELD_NUMBER: _ClassVar[int]
    LOADED_FIELD_NUMBER: _ClassVar[int]
    BASE_FIELD_NUMBER: _ClassVar[int]
    GATED_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    vocab_size: int
    max_context_len: int
    loaded: bool
    base: str
    gated: bool
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., vocab_size: _Optional[int] = ..., max_context_len: _Optional[int] = ..., loaded: _Optional[bool] = ..., base: _Optional[str] = ..., gated: _Optional[bool] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelDescription]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelDescription, _Mapping]]] = ...) -> None: ...
