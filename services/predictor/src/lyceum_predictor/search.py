"""Curriculum search requests as the predictor validates them: checks every DFM-Server v0.1 400 case, bounds
the work, then runs the genetic algorithm of `lyceum_ml.dfm.search` over task rows."""

from __future__ import annotations

import math
from dataclasses import dataclass

from lyceum_core import curriculum
from lyceum_core.errors import InvalidArgument, clip
from lyceum_ml.dfm import DFM, TaskVocab, UnknownTask
from lyceum_ml.dfm.search import GAParams, genetic_search
from lyceum_ml.kv_cache import KVCache

# Bounds on one search's work; the depth is bounded by the learner's history limit alone.
MAX_POPULATION = 1024
MAX_GENERATIONS = 1000
MAX_TASKS = 1024  # per list (target_tasks, candidate_tasks)


@dataclass(frozen=True)
class SearchRequest:
    target_tasks: list[str]
    candidate_tasks: list[str]
    depth: int
    population_size: int = curriculum.POPULATION_SIZE
    generations: int = curriculum.GENERATIONS
    elite_count: int = curriculum.ELITE_COUNT
    tournament_size: int = curriculum.TOURNAMENT_SIZE
    crossover_rate: float = curriculum.CROSSOVER_RATE
    mutation_rate: float = curriculum.MUTATION_RATE
    eval_every: int | None = None
    seed: int | None = None


@dataclass(frozen=True)
class SearchResult:
    best_sequence: list[str]
    best_fitness: float
    best_fitness_curve: list[float]  # best-ever after each generation; index 0 = the initial population
    mean_fitness_curve: list[float]  # each generation's mean fitness
    evaluations: int  # population_size x (generations + 1), as v0.1 counts (memoised repeats included)
    history_len: int


def run_search(
    model: DFM, vocab: TaskVocab, kv: KVCache, history_len: int, max_history_len: int, request: SearchRequest
) -> SearchResult:
    """Validates `request` (InvalidArgument naming the field), then searches from the learner's cached state
    of `history_len` events; `max_history_len` is the most events the model may condition on."""
    params = _params(request, history_len, max_history_len)
    targets = _encode(vocab, request.target_tasks, "target_tasks")
    candidates = _encode(vocab, request.candidate_tasks, "candidate_tasks")
    found = genetic_search(model, kv, candidates, targets, params)
    return SearchResult(
        best_sequence=[vocab.tasks[i] for i in found.best_sequence],
        best_fitness=found.best_fitness,
        best_fitness_curve=found.best_fitness_curve,
        mean_fitness_curve=found.mean_fitness_curve,
        evaluations=found.evaluations,
        history_len=history_len,
    )


def _params(r: SearchRequest, history_len: int, max_history_len: int) -> GAParams:
    if r.depth <= 0:
        raise InvalidArgument(f"depth must be positive, got {r.depth}", field="depth")
    if history_len + r.depth > max_history_len:
        raise InvalidArgument(
            f"a curriculum of {r.depth} tasks after {history_len} events runs past the limit of "
            f"{max_history_len} events",
            field="depth",
        )
    if not 1 <= r.population_size <= MAX_POPULATION:
        raise InvalidArgument(
            f"population_size must be in 1..{MAX_POPULATION}, got {r.population_size}",
            field="population_size",
        )
    if not 0 <= r.generations <= MAX_GENERATIONS:
        raise InvalidArgument(
            f"generations must be in 0..{MAX_GENERATIONS}, got {r.generations}", field="generations"
        )
    if r.elite_count < 0:
        raise InvalidArgument(f"elite_count must be >= 0, got {r.elite_count}", field="elite_count")
    if r.population_size < r.elite_count:
        raise InvalidArgument(
            f"population_size {r.population_size} is smaller than elite_count {r.elite_count}",
            field="population_size",
        )
    if r.tournament_size < 1:
        raise InvalidArgument(
            f"tournament_size must be >= 1, got {r.tournament_size}", field="tournament_size"
        )
    if r.population_size < r.tournament_size:
        raise InvalidArgument(
            f"population_size {r.population_size} is smaller than tournament_size {r.tournament_size}",
            field="population_size",
        )
    for field in ("crossover_rate", "mutation_rate"):
        rate = getattr(r, field)
        if not (math.isfinite(rate) and 0.0 <= rate <= 1.0):
            raise InvalidArgument(f"{field} must be in [0, 1], got {rate}", field=field)
    if r.eval_every is not None and r.eval_every <= 0:
        raise InvalidArgument(f"eval_every must be positive, got {r.eval_every}", field="eval_every")
    return GAParams(
        depth=r.depth,
        population_size=r.population_size,
        generations=r.generations,
        elite_count=r.elite_count,
        tournament_size=r.tournament_size,
        crossover_rate=r.crossover_rate,
        mutation_rate=r.mutation_rate,
        eval_every=r.eval_every,
        seed=r.seed,
    )


def _encode(vocab: TaskVocab, tasks: list[str], field: str) -> list[int]:
    if not tasks:
        raise InvalidArgument(f"{field} must not be empty", field=field)
    if len(tasks) > MAX_TASKS:
        raise InvalidArgument(f"{field} has {len(tasks)} entries; at most {MAX_TASKS}", field=field)
    try:
        return vocab.encode(tasks)
    except UnknownTask as e:
        raise InvalidArgument(f"unknown task {clip(e.task)!r}", field=field) from None
