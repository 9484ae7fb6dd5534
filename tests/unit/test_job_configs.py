"""Job configs and the ML dataclasses have one set of defaults: every field of a job config's model and
training section is a field of the dataclass the trainer builds from it, with the same default; and every
registered job kind has a trainer builder."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
from pydantic import BaseModel

from lyceum_jobs.configs import DFMModel, DFMTrain, LMModel, LMTrain
from lyceum_jobs.kinds import KINDS, parse_config
from lyceum_ml.dfm import DFMConfig
from lyceum_ml.dfm.train import TrainConfig
from lyceum_ml.lm import LMConfig
from lyceum_ml.lm.train import LMTrainConfig

PAIRS = [(DFMModel, DFMConfig), (DFMTrain, TrainConfig), (LMModel, LMConfig), (LMTrain, LMTrainConfig)]


@pytest.mark.parametrize(("section", "dataclass"), PAIRS, ids=lambda c: c.__name__)
def test_every_job_config_default_is_the_ml_dataclass_default(
    section: type[BaseModel], dataclass: type
) -> None:
    ml = {f.name: f for f in dataclasses.fields(dataclass)}
    for name, field in section.model_fields.items():
        assert name in ml, f"{section.__name__}.{name} is not a field of {dataclass.__name__}"
        assert field.default == ml[name].default, (
            f"{section.__name__}.{name} defaults to {field.default!r}, "
            f"{dataclass.__name__}.{name} to {ml[name].default!r}"
        )


def test_default_sections_build_the_dataclasses() -> None:
    assert DFMConfig(n_tasks=10, **DFMModel().model_dump()) == DFMConfig(n_tasks=10)
    assert TrainConfig(**DFMTrain().model_dump()) == TrainConfig()
    assert LMConfig(vocab_size=300, **LMModel().model_dump()) == LMConfig(vocab_size=300)
    assert LMTrainConfig(**LMTrain().model_dump()) == LMTrainConfig()


def test_default_configs_are_valid() -> None:
    parse_config("dfm_pretrain", {"dataset": {"format": "simulated"}})
    parse_config("lm_pretrain", {"corpus": {"paths": ["corpus.txt"]}})


def test_every_kind_has_a_trainer_builder() -> None:
    from lyceum_trainer.jobs import MODULES, builder

    assert set(MODULES) == set(KINDS)
    assert all(callable(builder(kind)) for kind in KINDS)
    kinds = {k.model_kind for k in KINDS.values()}
    assert kinds == {"dfm", "lm", "adapter", "gating_policy", ""}  # eval exports no model


def test_a_worker_loads_the_language_model_stack_only_for_a_job_that_needs_it() -> None:
    # A fresh interpreter: what starting a worker and building a DFM job's trainer import (this process has
    # imported everything already).
    code = (
        "import sys\n"
        "LM_STACK = ('peft', 'transformers', 'bitsandbytes')\n"
        "import lyceum_trainer.worker\n"
        "from lyceum_trainer.jobs import builder\n"
        "builder('dfm_pretrain')\n"
        "before = sorted(m for m in LM_STACK if m in sys.modules)\n"
        "import lyceum_ml.causal_lm_impl\n"  # what serving or training a language model loads
        "print(before, sorted(m for m in LM_STACK if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[] ['bitsandbytes', 'peft', 'transformers']"
