"""A simulated-learner generator for demos and tests: skills with difficulties, learners with per-skill
abilities that grow with practice, and outcomes drawn from an IRT-style success probability."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SKILLS = [
    "counting",
    "addition",
    "subtraction",
    "multiplication",
    "division",
    "fractions",
    "decimals",
    "percentages",
    "ratios",
    "equations",
    "geometry",
    "statistics",
]


@dataclass(frozen=True)
class SimConfig:
    n_skills: int = 8
    tasks_per_skill: int = 6
    n_learners: int = 2000
    min_events: int = 20
    max_events: int = 120
    stay_on_skill: float = 0.7  # probability of practising the same skill again
    seed: int = 0


@dataclass
class Simulation:
    tasks: list[str]  # task ids, e.g. "fractions/q3"
    histories: list[tuple[list[int], list[float]]]  # per learner: task rows and 0/1 outcomes
    true_p: list[list[float]]  # the generator's success probability for each event (an upper bound on skill)


def simulate(cfg: SimConfig) -> Simulation:
    """Generates learner histories; deterministic for a given config."""
    if not 1 <= cfg.n_skills <= len(SKILLS):
        raise ValueError(f"n_skills must be in [1, {len(SKILLS)}]")
    rng = np.random.default_rng(cfg.seed)
    tasks = [f"{SKILLS[s]}/q{q}" for s in range(cfg.n_skills) for q in range(cfg.tasks_per_skill)]
    skill_of = np.repeat(np.arange(cfg.n_skills), cfg.tasks_per_skill)
    skill_base = np.linspace(-1.0, 1.0, cfg.n_skills)  # later skills are harder
    difficulty = skill_base[skill_of] + rng.normal(0, 0.6, len(tasks))
    histories, true_p = [], []
    for _ in range(cfg.n_learners):
        ability = rng.normal(0, 1) + rng.normal(0, 0.5, cfg.n_skills)
        rate = rng.uniform(0.02, 0.25)
        n = int(rng.integers(cfg.min_events, cfg.max_events + 1))
        skill = int(rng.integers(cfg.n_skills))
        rows, outcomes, probs = [], [], []
        for _ in range(n):
            if rng.random() > cfg.stay_on_skill:
                skill = int(rng.integers(cfg.n_skills))
            task = skill * cfg.tasks_per_skill + int(rng.integers(cfg.tasks_per_skill))
            p = 1.0 / (1.0 + np.exp(-1.7 * (ability[skill] - difficulty[task])))
            correct = float(rng.random() < p)
            ability[skill] += rate * (1.0 + 0.5 * correct)  # practice helps, success a little more
            if skill + 1 < cfg.n_skills:
                ability[skill + 1] += 0.3 * rate  # some transfer to the next skill
            rows.append(task)
            outcomes.append(correct)
            probs.append(float(p))
        histories.append((rows, outcomes))
        true_p.append(probs)
    return Simulation(tasks=tasks, histories=histories, true_p=true_p)
