"""Curriculum search (DFM-Server v0.1's `/search`, a genetic algorithm over task sequences): its knobs'
defaults, defined once for every tier that accepts a search request."""

POPULATION_SIZE = 64
GENERATIONS = 20
ELITE_COUNT = 4
TOURNAMENT_SIZE = 2
CROSSOVER_RATE = 0.8
MUTATION_RATE = 0.05
