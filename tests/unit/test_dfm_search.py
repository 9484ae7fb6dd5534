"""Curriculum search on a tiny random DFM: the batched population roll-out equals scoring each individual
alone with predict/extend, the genetic algorithm is deterministic, elitist and finds a known optimum, the
predictor's run_search rejects every v0.1 400 case, and nothing changes the learner's cache."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pytest
import torch
from fixtures.predictor import MAX_HISTORY_LEN, TEST_TASKS, tiny_dfm
from torch import Tensor

from lyceum_core import curriculum
from lyceum_core.errors import InvalidArgument
from lyceum_ml.dfm import DFM, TaskVocab
from lyceum_ml.dfm import search as dfm_search
from lyceum_ml.dfm.inference import extend, predict, prefill
from lyceum_ml.dfm.search import GAParams, evaluate, evaluation_steps, genetic_search
from lyceum_ml.kv_cache import KVCache
from lyceum_predictor.search import (
    MAX_GENERATIONS,
    MAX_POPULATION,
    MAX_TASKS,
    SearchRequest,
    run_search,
)

N_TASKS = len(TEST_TASKS)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/fixtures/lm_models.py


@pytest.fixture(scope="module")
def model() -> DFM:
    return tiny_dfm(seed=3)


def learner(model: DFM, n_events: int, seed: int = 0) -> KVCache:
    g = torch.Generator().manual_seed(seed)
    tasks = torch.randint(0, N_TASKS, (n_events,), generator=g)
    outcomes = torch.randint(0, 2, (n_events,), generator=g).float()
    return prefill(model, tasks, outcomes, chunk=8)


def copy_cache(model: DFM, cache: KVCache) -> KVCache:
    c = model.new_cache(chunk=8)
    c.append([cache.layer(i) for i in range(model.cfg.n_layer)])
    return c


def naive_fitness(model: DFM, cache: KVCache, seq: Sequence[int], targets: Tensor, steps: list[int]) -> float:
    """One individual alone on its own copy of the cache: predict the next task, feed its expected outcome,
    score the targets after every evaluation step."""
    c = copy_cache(model, cache)
    total = 0.0
    for k, task in enumerate(seq, start=1):
        row = torch.tensor([task])
        p = predict(model, c, row)
        _, new_kv = extend(model, c, row, p)
        c.append(new_kv)
        if k in steps:
            total += predict(model, c, targets).mean().item()
    return total / len(steps)


@pytest.mark.parametrize(
    ("P", "T", "depth", "eval_every", "history"),
    [(1, 1, 1, None, 0), (5, 3, 4, None, 12), (7, 4, 6, 2, 5), (3, 2, 5, 1, 30), (6, 5, 7, 3, 0)],
)
def test_batched_fitness_equals_naive(
    model: DFM, P: int, T: int, depth: int, eval_every: int | None, history: int
):
    cache = learner(model, history, seed=P)
    g = torch.Generator().manual_seed(depth)
    population = torch.randint(0, N_TASKS, (P, depth), generator=g)
    targets = torch.randint(0, N_TASKS, (T,), generator=g)
    steps = evaluation_steps(depth, eval_every)
    batched = evaluate(model, cache, population, targets, steps)
    naive = torch.tensor([naive_fitness(model, cache, seq.tolist(), targets, steps) for seq in population])
    assert batched.dtype == torch.float32 and batched.shape == (P,)
    torch.testing.assert_close(batched, naive, rtol=0, atol=1e-5)
    # a budget of one row per decode (row chunks) answers the same
    chunked = evaluate(model, cache, population, targets, steps, max_scores=1)
    torch.testing.assert_close(chunked, batched, rtol=0, atol=1e-6)


def test_evaluation_steps():
    assert evaluation_steps(5, None) == [5]
    assert evaluation_steps(5, 2) == [2, 4, 5]
    assert evaluation_steps(6, 3) == [3, 6]
    assert evaluation_steps(3, 10) == [3]


def params(**overrides: object) -> GAParams:
    base: dict[str, object] = dict(
        depth=4,
        population_size=12,
        generations=4,
        elite_count=curriculum.ELITE_COUNT,
        tournament_size=curriculum.TOURNAMENT_SIZE,
        crossover_rate=curriculum.CROSSOVER_RATE,
        mutation_rate=curriculum.MUTATION_RATE,
        seed=7,
    )
    base.update(overrides)
    return GAParams(**base)  # type: ignore[arg-type]


def test_search_is_deterministic(model: DFM):
    cache = learner(model, 10)
    candidates, targets = [0, 3, 5, 8, 11], [1, 2]
    first = genetic_search(model, cache, candidates, targets, params())
    assert genetic_search(model, cache, candidates, targets, params()) == first
    other = genetic_search(model, cache, candidates, targets, params(seed=8))
    assert other.mean_fitness_curve != first.mean_fitness_curve  # another seed, another population
    for result in (first, other):
        assert set(result.best_sequence) <= set(candidates) and len(result.best_sequence) == 4
        assert result.evaluations == 12 * (4 + 1)
        assert len(result.best_fitness_curve) == len(result.mean_fitness_curve) == 4 + 1


def test_best_ever_is_monotone_and_is_the_returned_fitness(model: DFM):
    cache = learner(model, 6)
    targets = [2, 9, 14]
    result = genetic_search(
        model,
        cache,
        list(range(N_TASKS)),
        targets,
        params(depth=3, generations=8, mutation_rate=0.3, eval_every=2),
    )
    curve = result.best_fitness_curve
    assert all(a <= b for a, b in itertools.pairwise(curve))
    assert curve[-1] == result.best_fitness
    assert max(result.mean_fitness_curve) <= result.best_fitness
    naive = naive_fitness(model, cache, result.best_sequence, torch.tensor(targets), evaluation_steps(3, 2))
    assert abs(naive - result.best_fitness) < 1e-5


def test_elites_survive_unchanged():
    import random

    population = [(i, i) for i in range(6)]
    fitness = [0.1, 0.9, 0.3, 0.8, 0.2, 0.7]
    nxt = dfm_search._next_generation(
        random.Random(0),
        population,
        fitness,
        [0, 1],
        params(depth=2, population_size=6, elite_count=3, mutation_rate=1.0),
    )
    assert len(nxt) == 6 and nxt[:3] == [(1, 1), (3, 3), (5, 5)]


def test_search_finds_the_brute_force_optimum(model: DFM):
    cache = learner(model, 8, seed=5)
    candidates, targets = [2, 7, 12], torch.tensor([0, 4, 9])
    steps = evaluation_steps(2, None)
    scores = {
        seq: naive_fitness(model, cache, seq, targets, steps)
        for seq in itertools.product(candidates, repeat=2)
    }
    best = max(scores, key=lambda s: scores[s])
    assert len(set(scores.values())) == len(scores)  # a unique optimum
    result = genetic_search(
        model,
        cache,
        candidates,
        targets.tolist(),
        params(depth=2, population_size=16, generations=6, mutation_rate=0.3),
    )
    assert tuple(result.best_sequence) == best
    assert abs(result.best_fitness - scores[best]) < 1e-5


def test_each_generation_scores_only_new_individuals_in_one_call(model: DFM, monkeypatch: pytest.MonkeyPatch):
    calls: list[list[tuple[int, ...]]] = []
    real = dfm_search.evaluate

    def counting(model: DFM, cache: KVCache, population: Tensor, *args: object, **kwargs: object) -> Tensor:
        calls.append([tuple(r) for r in population.tolist()])
        return real(model, cache, population, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(dfm_search, "evaluate", counting)
    cache = learner(model, 4)
    result = genetic_search(model, cache, [1, 2], [3], params(depth=2, population_size=10, generations=5))
    assert 1 <= len(calls) <= 6  # at most one call per generation (none when all were seen)
    seen = [ind for call in calls for ind in call]
    assert len(seen) == len(set(seen)) <= 4  # each of the 2 x 2 sequences scored once at most
    assert result.evaluations == 10 * 6


# --- the predictor's run_search ------------------------------------------------------------------------
VOCAB = TaskVocab(TEST_TASKS)
HISTORY = 10


@pytest.fixture(scope="module")
def kv(model: DFM) -> KVCache:
    return learner(model, HISTORY, seed=1)


def request(**overrides: object) -> SearchRequest:
    base: dict[str, object] = dict(
        target_tasks=["t00", "t05"],
        candidate_tasks=["t01", "t02", "t03"],
        depth=3,
        population_size=8,
        generations=2,
        seed=1,
    )
    base.update(overrides)
    return SearchRequest(**base)  # type: ignore[arg-type]


def test_run_search_answers_task_ids_and_changes_nothing(model: DFM, kv: KVCache):
    before = kv.buf[..., : kv.length, :].clone()
    length, capacity = kv.length, kv.capacity
    result = run_search(model, VOCAB, kv, HISTORY, MAX_HISTORY_LEN, request(eval_every=1))
    assert (kv.length, kv.capacity) == (length, capacity)
    assert torch.equal(kv.buf[..., : kv.length, :], before)
    assert len(result.best_sequence) == 3 and set(result.best_sequence) <= {"t01", "t02", "t03"}
    assert result.history_len == HISTORY and result.evaluations == 8 * 3
    assert len(result.best_fitness_curve) == 3 and result.best_fitness == result.best_fitness_curve[-1]
    assert 0.0 < result.best_fitness < 1.0
    assert run_search(model, VOCAB, kv, HISTORY, MAX_HISTORY_LEN, request(eval_every=1)) == result


def test_run_search_reaches_the_history_limit_exactly(model: DFM, kv: KVCache):
    depth = MAX_HISTORY_LEN - HISTORY
    result = run_search(model, VOCAB, kv, HISTORY, MAX_HISTORY_LEN, request(depth=depth, generations=0))
    assert len(result.best_sequence) == depth


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"depth": 0}, "depth"),
        ({"depth": -2}, "depth"),
        ({"depth": MAX_HISTORY_LEN - HISTORY + 1}, "depth"),
        ({"target_tasks": []}, "target_tasks"),
        ({"candidate_tasks": []}, "candidate_tasks"),
        ({"target_tasks": ["t00"] * (MAX_TASKS + 1)}, "target_tasks"),
        ({"candidate_tasks": ["t00"] * (MAX_TASKS + 1)}, "candidate_tasks"),
        ({"target_tasks": ["t00", "nope"]}, "target_tasks"),
        ({"candidate_tasks": ["x" * 500]}, "candidate_tasks"),
        ({"population_size": 3, "elite_count": 4}, "population_size"),
        ({"population_size": 2, "elite_count": 0, "tournament_size": 3}, "population_size"),
        ({"population_size": 0, "elite_count": 0}, "population_size"),
        ({"population_size": MAX_POPULATION + 1}, "population_size"),
        ({"generations": -1}, "generations"),
        ({"generations": MAX_GENERATIONS + 1}, "generations"),
        ({"elite_count": -1}, "elite_count"),
        ({"tournament_size": 0}, "tournament_size"),
        ({"crossover_rate": 1.5}, "crossover_rate"),
        ({"crossover_rate": float("nan")}, "crossover_rate"),
        ({"mutation_rate": -0.1}, "mutation_rate"),
        ({"eval_every": 0}, "eval_every"),
    ],
)
def test_run_search_rejects(model: DFM, kv: KVCache, overrides: dict[str, object], field: str):
    with pytest.raises(InvalidArgument) as err:
        run_search(model, VOCAB, kv, HISTORY, MAX_HISTORY_LEN, request(**overrides))
    assert err.value.field == field
    assert err.value.http_status == 400
    assert len(err.value.message) < 200  # user input is clipped
    if overrides.get("depth") == MAX_HISTORY_LEN - HISTORY + 1:
        assert str(MAX_HISTORY_LEN) in err.value.message
