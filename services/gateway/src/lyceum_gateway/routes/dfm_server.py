"""The DFM-Server v0.1 API, mounted at `/dfm-server` so existing clients work unchanged: same paths,
bodies, status codes and `{"detail": ...}` errors, served by the predictors instead of an in-process model."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import APIRouter

from lyceum_core.errors import AlreadyExists, InvalidArgument, NotFound
from lyceum_fleet.predictor import Event, Feedback, SearchSpec
from lyceum_gateway.deps import Context, Predictors, QuotaChecks, RequestLimits
from lyceum_gateway.schemas import dfm_server as s
from lyceum_gateway.schemas.compat import compat_error_responses

# A malformed request is 422 with one message; any call that reaches a predictor may find none serving (503).
router = APIRouter(tags=["dfm-server"], responses=compat_error_responses(422, 503))


@contextmanager
def original_messages(learner_id: str) -> Iterator[None]:
    """Words learner errors as the original server did (clients may show or match them)."""
    try:
        yield
    except NotFound as err:
        raise NotFound(f"Learner '{learner_id}' not found", field=err.field) from err
    except AlreadyExists as err:
        raise AlreadyExists(f"Learner '{learner_id}' already exists", field=err.field) from err


@router.post("/learners", summary="Register a learner", responses=compat_error_responses(400, 409))
async def register_learner(
    body: s.RegisterRequest, ctx: Context, predictors: Predictors, limits: RequestLimits, quotas: QuotaChecks
) -> s.RegisterResponse:
    """Creates a learner, with a history when both `tasks` and `outcomes` are given (429 when the tenant has
    its quota of learners, `max_learners`, as on `/v1`)."""
    limits.learner_id(body.learner_id)
    if (body.tasks is None) != (body.outcomes is None):
        missing = "outcomes" if body.outcomes is None else "tasks"
        raise InvalidArgument("tasks and outcomes must be given together", field=missing)
    tasks, outcomes = body.tasks or [], body.outcomes or []
    if len(tasks) != len(outcomes):
        raise InvalidArgument("tasks and outcomes must have the same length", field="outcomes")
    limits.events(tasks, "tasks")
    history = [Event(task=task, outcome=outcome) for task, outcome in zip(tasks, outcomes, strict=True)]
    await quotas.check_learners(ctx.tenant)
    with original_messages(body.learner_id):
        predictor = predictors.for_learner(ctx, body.learner_id)
        learner = await predictor.register_learner(ctx, body.learner_id, history)
    return s.RegisterResponse(learner_id=learner.learner_id, history_len=learner.history_len)


@router.post("/predict", summary="Predict success on tasks", responses=compat_error_responses(400, 404, 409))
async def predict(
    body: s.PredictRequest, ctx: Context, predictors: Predictors, limits: RequestLimits
) -> s.PredictResponse:
    """P(success) on each task given the learner's history."""
    limits.learner_id(body.learner_id)
    limits.tasks(body.tasks)
    with original_messages(body.learner_id):
        predictor = predictors.for_learner(ctx, body.learner_id)
        result = await predictor.predict(ctx, body.learner_id, body.tasks)
    return s.PredictResponse(learner_id=body.learner_id, predictions=result.probabilities)


@router.post("/update", summary="Record one outcome", responses=compat_error_responses(400, 404, 409))
async def update(
    body: s.UpdateRequest, ctx: Context, predictors: Predictors, limits: RequestLimits
) -> s.UpdateResponse:
    """Appends one (task, outcome) event to the learner's history."""
    limits.learner_id(body.learner_id)
    event = Event(task=body.task, outcome=body.outcome)
    with original_messages(body.learner_id):
        predictor = predictors.for_learner(ctx, body.learner_id)
        result = await predictor.append_events(ctx, body.learner_id, [event])
    return s.UpdateResponse(learner_id=body.learner_id, history_len=result.learner.history_len)


@router.post("/forecast", summary="Forecast task sequences", responses=compat_error_responses(400, 404, 409))
async def forecast(
    body: s.ForecastRequest, ctx: Context, predictors: Predictors, limits: RequestLimits
) -> s.ForecastResponse:
    """S x L probabilities, each sequence rolled out with expected feedback; changes nothing."""
    limits.learner_id(body.learner_id)
    limits.forecast(body.task_sequences)
    predictor = predictors.for_learner(ctx, body.learner_id)
    sequences = body.task_sequences
    lengths = {len(seq) for seq in sequences}
    with original_messages(body.learner_id):
        if not sequences or lengths == {0} or len(lengths) > 1:
            # The original answered these without the model, but only for a known learner.
            await predictor.get_learner(ctx, body.learner_id)
            if len(lengths) > 1:
                raise InvalidArgument("All task sequences must have the same length", field="task_sequences")
            return s.ForecastResponse(learner_id=body.learner_id, predictions=[[] for _ in sequences])
        result = await predictor.forecast(ctx, body.learner_id, sequences, Feedback.EXPECTED)
    return s.ForecastResponse(learner_id=body.learner_id, predictions=result.predictions)


@router.delete(
    "/learners/{learner_id}", summary="Delete a learner", responses=compat_error_responses(400, 404)
)
async def delete_learner(
    learner_id: str, ctx: Context, predictors: Predictors, limits: RequestLimits
) -> s.DeleteResponse:
    """Deletes the learner and its history."""
    limits.learner_id(learner_id)
    with original_messages(learner_id):
        await predictors.for_learner(ctx, learner_id).delete_learner(ctx, learner_id)
    return s.DeleteResponse(learner_id=learner_id)


@router.get("/health", summary="Server health")
async def health(ctx: Context, predictors: Predictors) -> s.HealthResponse:
    """`learner_count` sums the predictors' resident learners of the caller's tenant (with a cache loaded)."""
    infos = await asyncio.gather(*(replica.get_model_info(ctx) for replica in predictors.serving()))
    return s.HealthResponse(status="ok", learner_count=sum(info.resident_learners for info in infos))


@router.get("/tasks", summary="List the known tasks")
async def list_tasks(ctx: Context, predictors: Predictors) -> s.TasksResponse:
    """The task ids the model knows, sorted."""
    tasks = sorted(await predictors.any().list_tasks(ctx))
    return s.TasksResponse(tasks=tasks, count=len(tasks))


@router.get("/config", summary="Model configuration")
async def get_config(ctx: Context, predictors: Predictors) -> s.ConfigResponse:
    """The served model's architecture in the original server's field names."""
    info = await predictors.any().get_model_info(ctx)
    return s.ConfigResponse(
        n_layer=info.n_layer,
        n_head=info.n_head,
        n_kv_head=info.n_kv_head,
        n_embd=info.d_model,
        # A learned task table feeds d_model-wide task vectors (Lyceum's DFMs; fixed "vectors" would need
        # their width, which GetModelInfo does not report).
        n_input=info.d_model,
        encoder_name=info.task_encoder,
        block_size=2 * (info.max_history_len + 1),
    )


@router.post("/search", summary="Search a curriculum", responses=compat_error_responses(400, 404))
async def search(
    body: s.SearchRequest, ctx: Context, predictors: Predictors, limits: RequestLimits
) -> s.SearchResponse:
    """The `depth`-task sequence of candidate tasks that most raises the predicted success on the target
    tasks (a genetic algorithm scored by forecasts with expected feedback); changes nothing."""
    limits.learner_id(body.learner_id)
    limits.tasks(body.target_tasks, "target_tasks")
    limits.tasks(body.candidate_tasks, "candidate_tasks")
    spec = SearchSpec(
        target_tasks=body.target_tasks,
        candidate_tasks=body.candidate_tasks,
        depth=body.depth,
        population_size=body.population_size,
        generations=body.generations,
        elite_count=body.elite_count,
        tournament_size=body.tournament_size,
        crossover_rate=body.crossover_rate,
        mutation_rate=body.mutation_rate,
        eval_every=body.eval_every,
        # random.Random seeds with |seed|, so v0.1 answered a negative seed as its absolute value.
        seed=None if body.seed is None else abs(body.seed),
    )
    with original_messages(body.learner_id):
        result = await predictors.for_learner(ctx, body.learner_id).search_curriculum(
            ctx, body.learner_id, spec
        )
    return s.SearchResponse(
        learner_id=body.learner_id, best_sequence=result.best_sequence, best_fitness=result.best_fitness
    )


@router.post("/gc", summary="Free memory")
async def collect_garbage(ctx: Context, predictors: Predictors) -> s.GcResponse:
    """Frees what every serving predictor can free without losing state (the accelerator's cached blocks,
    idle buffers)."""
    await asyncio.gather(*(replica.collect_garbage(ctx) for replica in predictors.serving()))
    return s.GcResponse(status="ok")
