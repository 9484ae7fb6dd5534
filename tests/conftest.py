"""Test-suite root: fixtures live in tests/fixtures/<area>.py, one module per area, loaded here."""

pytest_plugins = [
    "fixtures.parallel",
    "fixtures.database",
    "fixtures.predictor",
    "fixtures.lm_models",
    "fixtures.sampler",
    "fixtures.gateway",
    "fixtures.fleet",
    "fixtures.trainer",
]
