"""Curriculum search (DFM-Server v0.1's `/search`): a genetic algorithm over task sequences, each scored by
rolling it forward from the learner's cached state with expected-value feedback.

Pure functions of (model, cache, task rows): the learner's cache is read, never copied or changed.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from lyceum_ml.dfm.model import DFM
from lyceum_ml.kv_cache import KVCache

# Attention-score elements one decode may hold (rows x heads x new tokens x attended tokens): a population
# whose roll-out would exceed it is rolled out in row chunks (rows are independent), so memory stays bounded.
MAX_SCORES = 1 << 25


def evaluation_steps(depth: int, eval_every: int | None) -> list[int]:
    """The steps k (events fed) after which the targets are scored: every `eval_every` steps plus the last."""
    if eval_every is None:
        return [depth]
    return sorted({*range(eval_every, depth + 1, eval_every), depth})


@torch.no_grad()
def evaluate(
    model: DFM,
    cache: KVCache,
    population: Tensor,
    targets: Tensor,
    eval_steps: Sequence[int],
    *,
    max_scores: int = MAX_SCORES,
) -> Tensor:
    """Fitness (P,) fp32 of P task sequences `population` (P, depth) from the cached state: the mean over
    `eval_steps` of the mean P(success) on `targets` (T,) after k events of the sequence are fed back with
    their expected outcomes. One batched roll-out shares the learner's cache (batch 1, never copied)."""
    P, depth = population.shape
    steps = sorted(set(eval_steps))
    if not steps or steps[0] < 1 or steps[-1] > depth:
        raise ValueError(f"evaluation steps must lie in 1..{depth}, got {list(eval_steps)}")
    T = targets.shape[0]
    n_max = 2 + T  # new tokens in one decode: an outcome, the next task and the targets
    per_row = model.cfg.n_head * n_max * (cache.length + 2 * depth + n_max)
    rows = max(1, max_scores // per_row)
    chunks = [_rollout(model, cache, population[i : i + rows], targets, steps) for i in range(0, P, rows)]
    return torch.cat(chunks) if chunks else torch.empty(0, device=model.device)


def _rollout(model: DFM, cache: KVCache, population: Tensor, targets: Tensor, steps: list[int]) -> Tensor:
    """Step j decodes [outcome_{j-1}, task_j, targets if j is an evaluation step] for all rows at once:
    outcome and task are causal; each target sees the outcome (so the state after j events) and itself,
    never task_j nor another target, exactly as `inference.predict` would from that state."""
    P, depth = population.shape
    T = targets.shape[0]
    dev = model.device
    rollout = model.new_cache(batch=P, capacity=2 * depth)
    targets_x = model.embed_tasks(targets)[None].expand(P, -1, -1)  # (P, T, d)
    targets_rows = targets[None].expand(P, -1)  # (P, T)
    total = torch.zeros(P, device=dev)
    outcome_x: Tensor | None = None  # (P, 1, d): the outcome of the previous step's task
    for j in range(depth + 1):
        parts = [] if outcome_x is None else [outcome_x]
        if j < depth:
            parts.append(model.embed_tasks(population[:, j : j + 1]))  # (P, 1, d)
        m = len(parts)  # the roll-out's own tokens this step; kept in the side cache
        scored = j in steps
        if scored:
            parts.append(targets_x)
        n = m + (T if scored else 0)
        mask = torch.zeros(n, n, dtype=torch.bool, device=dev)
        mask[:m, :m] = torch.ones(m, m, dtype=torch.bool, device=dev).tril()
        mask[m:, m:] = torch.eye(n - m, dtype=torch.bool, device=dev)
        if outcome_x is not None:
            mask[m:, 0] = True  # targets see the fed outcome
        start = cache.length + rollout.length
        positions = torch.full((n,), cache.length + 2 * j, device=dev)  # targets: the next task's position
        positions[:m] = torch.arange(start, start + m, device=dev)
        h, new_kv = model.decode(torch.cat(parts, dim=1), positions, mask, [cache, rollout])
        if scored:
            total += torch.sigmoid(model.logits(h[:, m:], targets_rows)).mean(dim=1)
        if j == depth:
            break
        task = population[:, j]
        p = torch.sigmoid(model.logits(h[:, m - 1], task))  # (P,) the prior of task_j
        rollout.append([(k[:, :, :m], v[:, :, :m]) for k, v in new_kv])
        outcome_x = model.embed_outcomes(p, task)[:, None]  # expected-value feedback
    return total / len(steps)


@dataclass(frozen=True)
class GAParams:
    """DFM-Server v0.1's search knobs (validated, and defaulted, by the caller: lyceum_core.curriculum)."""

    depth: int
    population_size: int
    generations: int
    elite_count: int
    tournament_size: int
    crossover_rate: float
    mutation_rate: float
    eval_every: int | None = None
    seed: int | None = None


@dataclass(frozen=True)
class GAResult:
    best_sequence: list[int]  # task rows
    best_fitness: float
    best_fitness_curve: list[float]  # best-ever after generation g (g = 0: the initial population)
    mean_fitness_curve: list[float]  # mean fitness of generation g's population
    # Individuals scored as DFM-Server v0.1 counts them: population_size x (generations + 1). Elites and
    # duplicates are memoised, so fewer roll-outs may actually run; the count does not show that.
    evaluations: int


def genetic_search(
    model: DFM, cache: KVCache, candidates: Sequence[int], targets: Sequence[int], params: GAParams
) -> GAResult:
    """The genetic algorithm: a random population of `depth` candidates (with replacement), then per
    generation elitism, tournament selection without replacement, single-point crossover and per-gene
    mutation; `random.Random(seed)` drives every choice, so equal inputs give equal answers."""
    rng = random.Random(params.seed)
    cand = list(candidates)
    target_rows = torch.tensor(list(targets), dtype=torch.long, device=model.device)
    steps = evaluation_steps(params.depth, params.eval_every)
    memo: dict[tuple[int, ...], float] = {}

    def score(population: list[tuple[int, ...]]) -> list[float]:
        new = list(dict.fromkeys(ind for ind in population if ind not in memo))
        if new:
            rows = torch.tensor(new, dtype=torch.long, device=model.device)
            memo.update(zip(new, evaluate(model, cache, rows, target_rows, steps).tolist(), strict=True))
        return [memo[ind] for ind in population]

    population = [tuple(rng.choice(cand) for _ in range(params.depth)) for _ in range(params.population_size)]
    best: tuple[int, ...] = population[0]
    best_fitness = float("-inf")
    best_curve: list[float] = []
    mean_curve: list[float] = []
    for generation in range(params.generations + 1):
        fitness = score(population)
        for ind, f in zip(population, fitness, strict=True):
            if f > best_fitness:  # ties keep the earlier one
                best, best_fitness = ind, f
        best_curve.append(best_fitness)
        mean_curve.append(sum(fitness) / len(fitness))
        if generation < params.generations:
            population = _next_generation(rng, population, fitness, cand, params)
    return GAResult(
        best_sequence=list(best),
        best_fitness=best_fitness,
        best_fitness_curve=best_curve,
        mean_fitness_curve=mean_curve,
        evaluations=params.population_size * (params.generations + 1),
    )


def _next_generation(
    rng: random.Random,
    population: list[tuple[int, ...]],
    fitness: list[float],
    candidates: list[int],
    params: GAParams,
) -> list[tuple[int, ...]]:
    """The elites unchanged, then pairs of children of tournament winners until the population is full."""
    size, depth = len(population), params.depth
    ranked = sorted(range(size), key=lambda i: -fitness[i])  # stable: ties keep population order
    nxt = [population[i] for i in ranked[: params.elite_count]]

    def select() -> tuple[int, ...]:
        entrants = rng.sample(range(size), params.tournament_size)
        return population[max(entrants, key=lambda i: fitness[i])]  # ties: the first drawn

    def mutate(ind: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(rng.choice(candidates) if rng.random() < params.mutation_rate else g for g in ind)

    while len(nxt) < size:
        a, b = select(), select()
        if depth > 1 and rng.random() < params.crossover_rate:
            point = rng.randint(1, depth - 1)
            a, b = a[:point] + b[point:], b[:point] + a[point:]
        nxt.append(mutate(a))
        if len(nxt) < size:
            nxt.append(mutate(b))
    return nxt
