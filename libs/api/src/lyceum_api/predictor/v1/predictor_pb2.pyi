import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FeedbackMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FEEDBACK_MODE_UNSPECIFIED: _ClassVar[FeedbackMode]
    FEEDBACK_MODE_EXPECTED: _ClassVar[FeedbackMode]
    FEEDBACK_MODE_SAMPLE: _ClassVar[FeedbackMode]
FEEDBACK_MODE_UNSPECIFIED: FeedbackMode
FEEDBACK_MODE_EXPECTED: FeedbackMode
FEEDBACK_MODE_SAMPLE: FeedbackMode

class Event(_message.Message):
    __slots__ = ("task", "outcome")
    TASK_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    task: str
    outcome: float
    def __init__(self, task: _Optional[str] = ..., outcome: _Optional[float] = ...) -> None: ...

class Learner(_message.Message):
    __slots__ = ("learner_id", "history_len", "created_at", "updated_at", "context_len")
    LEARNER_ID_FIELD_NUMBER: _ClassVar[int]
    HISTORY_LEN_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_LEN_FIELD_NUMBER: _ClassVar[int]
    learner_id: str
    history_len: int
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    context_len: int
    def __init__(self, learner_id: _Optional[str] = ..., history_len: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., context_len: _Optional[int] = ...) -> None: ...

class RegisterLearnerRequest(_message.Message):
    __slots__ = ("learner_id", "history")
    LEARNER_ID_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    learner_id: str
    history: _containers.RepeatedCompositeFieldContainer[Event]
    def __init__(self, learner_id: _Optional[str] = ..., history: _Optional[_Iterable[_Union[Event, _Mapping]]] = ...) -> None: ...

class RegisterLearnerResponse(_message.Message):
    __slots__ = ("learner",)
    LEARNER_FIELD_NUMBER: _ClassVar[int]
    learner: Learner
    def __init__(self, learner: _Optional[_Union[Learner, _Mapping]] = ...) -> None: ...

class GetLearnerRequest(_message.Message):
    __slots__ = ("learner_id",)
    LEARNER_ID_FIELD_NUMBER: _ClassVar[int]
    learner_id: str
    def __init__(self, learner_id: _Optional[str] = ...) -> None: ...

class GetLearnerResponse(_message.Message):
    __slots__ = ("learner",)
    LEARNER_FIELD_NUMBER: _ClassVar[int]
    learner: Learner
    def __init__(self, learner: _Optional[_Union[Learner, _Mapping]] = ...) -> None: ...

class PredictRequest(_message.Message):
    __slots__ = ("learner_id", "tasks")
    LEARNER_ID_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    learner_id: str
    tasks: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, learner_id: _Optional[str] = ..., tasks: _Optional[_Iterable[str]] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("learner_id", "probabilities", "history_len")
    LEARNER_ID_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    HISTORY_LEN_FIELD_NUMBER: _ClassVar[int]
    learner_id: str
    probabilities: _containers.RepeatedScalarFieldContainer[float]
    history_len: int
    def __init__(self, learner_id: _Optional[str] = ..., probabilities: _Optional[_Iterable[float]] = ..., history_len: _Optional[int] = ...) -> None: ...

class AppendEventsRequest(_message.Message):
    __slots__ = ("learner_id", "events", "expected_history_len")
    LEARNER_ID_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_HISTORY_LEN_FIELD_NUMBER: _ClassVar[int]
    learner_id: str
    events: _containers.RepeatedCompositeFieldContainer[Event]
    expected_history_len: int
    def __init__(self, learner_id: _Optional[str] = ..., events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ..., expected_history_len: _Optional[int] = ...) -> None: ...

class AppendEventsResponse(_message.Message):
    __slots__ = ("learner", "prior_probabilities")
    LEARNER_FIELD_NUMBER: _ClassVar[int]
    PRIOR_PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    learner: Learner
    prior_probabilities: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, learner: _Optional[_Union[Learner, _Mapping]] = ..., prior_probabilities: _Optional[_Iterable[float]] = ...) -> None: ...

class TaskSequence(_message.Message):
    __slots__ = ("tasks",)
    TASKS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tasks: _Optional[_Iterable[str]] = ...) -> None: ...

class ProbabilitySequence(_message.Message):
    __slots__ = ("probabilities",)
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    probabilities: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, probabilities: _Optional[_Iterable[float]] = ...) -> None: ...

class ForecastRequest(_message.Message):
    __slots__ = ("learner_id", "task_sequences", "feedback", "seed")
    LEARNER_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    FEEDBACK_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    learner_id: str
    task_sequences: _containers.RepeatedCompositeFieldContainer[TaskSequence]
    feedback: FeedbackMode
    seed: int
    def __init__(self, learner_id: _Optional[str] = ..., task_sequences: _Optional[_Iterable[_Union[TaskSequence, _Mapping]]] = ..., feedback: _Optional[_Union[FeedbackMode, str]] = ..., seed: _Optional[int] = ...) -> None: ...

class ForecastResponse(_message.Message):
    __slots__ = ("learner_id", "predictions")
    LEARNER_ID_FIELD_NUMBER: _ClassVar[int]
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    learner_id: str
    predictions: _containers.RepeatedCompositeFieldContainer[ProbabilitySequence]
    def __init__(self, learner_id: _Optional[str] = ..., predictions: _Optional[_Iterable[_Union[ProbabilitySequence, _Mapping]]] = ...) -> None: ...

class DeleteLearnerRequest(_message.Message):
    __slots__ = ("learner_id",)
    LEARNER_ID_FIELD_NUMBER: _ClassVar[int]
    learner_id: str
    def __init__(self, learner_id: _Optional[str] = ...) -> None: ...

class DeleteLearnerResponse(_message.Message):
    __slots__ = ("learner_id",)
    LEARNER_ID_FIELD_NUMBER: _ClassVar[int]
    learner_id: str
    def __init__(self, learner_id: _Optional[str] = ...) -> None: ...

class ListTasksRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListTasksResponse(_message.Message):
    __slots__ = ("tasks",)
    TASKS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tasks: _Optional[_Iterable[str]] = ...) -> None: ...

class GetModelInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetModelInfoResponse(_message.Message):
    __slots__ = ("name", "version", "n_layer", "n_head", "n_kv_head", "d_model", "n_tasks", "task_encoder", "max_history_len", "dtype", "device", "n_parameters", "resident_learners", "context_policy", "context_window")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    N_LAYER_FIELD_NUMBER: _ClassVar[int]
    N_HEAD_FIELD_NUMBER: _ClassVar[int]
    N_KV_HEAD_FIELD_NUMBER: _ClassVar[int]
    D_MODEL_FIELD_NUMBER: _ClassVar[int]
    N_TASKS_FIELD_NUMBER: _ClassVar[int]
    TASK_ENCODER_FIELD_NUMBER: _ClassVar[int]
    MAX_HISTORY_LEN_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    N_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    RESIDENT_LEARNERS_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_POLICY_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_WINDOW_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    n_layer: int
    n_head: int
    n_kv_head: int
    d_model: int
    n_tasks: int
    task_encoder: str
    max_history_len: int
    dtype: str
    device: str
    n_parameters: int
    resident_learners: int
    context_policy: str
    context_window: int
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., n_layer: _Optional[int] = ..., n_head: _Optional[int] = ..., n_kv_head: _Optional[int] = ..., d_model: _Optional[int] = ..., n_tasks: _Optional[int] = ..., task_encoder: _Optional[str] = ..., max_history_len: _Optional[int] = ..., dtype: _Optional[str] = ..., device: _Optional[str] = ..., n_parameters: _Optional[int] = ..., resident_learners: _Optional[int] = ..., context_policy: _Optional[str] = ..., context_window: _Optional[int] = ...) -> None: ...

class PredictManyItem(_message.Message):
    __slots__ = ("learner_id", "tasks")
    LEARNER_ID_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    learner_id: str
    tasks: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, learner_id: _Optional[str] = ..., tasks: _Optional[_Iterable[str]] = ...) -> None: ...

class PredictManyResult(_message.Message):
    __slots__ = ("prediction", "error")
    PREDICTION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    prediction: PredictResponse
    error: ItemError
    def __init__(self, prediction: _Optional[_Union[PredictResponse, _Mapping]] = ..., error: _Optional[_Union[ItemError, _Mapping]] = ...) -> None: ...

class ItemError(_message.Message):
    __slots__ = ("code", "message", "field")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    field: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., field: _Optional[str] = ...) -> None: ...

class PredictManyRequest(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[PredictManyItem]
    def __init__(self, items: _Optional[_Iterable[_Union[PredictManyItem, _Mapping]]] = ...) -> None: ...

class PredictManyResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[PredictManyResult]
    def __init__(self, results: _Optional[_Iterable[_Union[PredictManyResult, _Mapping]]] = ...) -> None: ...

class SearchCurriculumRequest(_message.Message):
    __slots__ = ("learner_id", "target_tasks", "candidate_tasks", "depth", "population_size", "generations", "elite_count", "tournament_size", "crossover_rate", "mutation_rate", "eval_every", "seed")
    LEARNER_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_TASKS_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_TASKS_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    POPULATION_SIZE_FIELD_NUMBER: _ClassVar[int]
    GENERATIONS_FIELD_NUMBER: _ClassVar[int]
    ELITE_COUNT_FIELD_NUMBER: _ClassVar[int]
    TOURNAMENT_SIZE_FIELD_NUMBER: _ClassVar[int]
    CROSSOVER_RATE_FIELD_NUMBER: _ClassVar[int]
    MUTATION_RATE_FIELD_NUMBER: _ClassVar[int]
    EVAL_EVERY_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    learner_id: str
    target_tasks: _containers.RepeatedScalarFieldContainer[str]
    candidate_tasks: _containers.RepeatedScalarFieldContainer[str]
    depth: int
    population_size: int
    generations: int
    elite_count: int
    tournament_size: int
    crossover_rate: float
    mutation_rate: float
    eval_every: int
    seed: int
    def __init__(self, learner_id: _Optional[str] = ..., target_tasks: _Optional[_Iterable[str]] = ..., candidate_tasks: _Optional[_Iterable[str]] = ..., depth: _Optional[int] = ..., population_size: _Optional[int] = ..., generations: _Optional[int] = ..., elite_count: _Optional[int] = ..., tournament_size: _Optional[int] = ..., crossover_rate: _Optional[float] = ..., mutation_rate: _Optional[float] = ..., eval_every: _Optional[int] = ..., seed: _Optional[int] = ...) -> None: ...

class SearchCurriculumResponse(_message.Message):
    __slots__ = ("learner_id", "best_sequence", "best_fitness", "best_fitness_curve", "mean_fitness_curve", "evaluations", "history_len")
    LEARNER_ID_FIELD_NUMBER: _ClassVar[int]
    BEST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    BEST_FITNESS_FIELD_NUMBER: _ClassVar[int]
    BEST_FITNESS_CURVE_FIELD_NUMBER: _ClassVar[int]
    MEAN_FITNESS_CURVE_FIELD_NUMBER: _ClassVar[int]
    EVALUATIONS_FIELD_NUMBER: _ClassVar[int]
    HISTORY_LEN_FIELD_NUMBER: _ClassVar[int]
    learner_id: str
    best_sequence: _containers.RepeatedScalarFieldContainer[str]
    best_fitness: float
    best_fitness_curve: _containers.RepeatedScalarFieldContainer[float]
    mean_fitness_curve: _containers.RepeatedScalarFieldContainer[float]
    evaluations: int
    history_len: int
    def __init__(self, learner_id: _Optional[str] = ..., best_sequence: _Optional[_Iterable[str]] = ..., best_fitness: _Optional[float] = ..., best_fitness_curve: _Optional[_Iterable[float]] = ..., mean_fitness_curve: _Optional[_Iterable[float]] = ..., evaluations: _Optional[int] = ..., history_len: _Optional[int] = ...) -> None: ...

class CollectGarbageRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CollectGarbageResponse(_message.Message):
    __slots__ = ("freed_bytes",)
    FREED_BYTES_FIELD_NUMBER: _ClassVar[int]
    freed_bytes: int
    def __init__(self, freed_bytes: _Optional[int] = ...) -> None: ...
