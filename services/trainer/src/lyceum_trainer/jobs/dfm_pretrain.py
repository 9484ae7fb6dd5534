"""DFM pretraining: a knowledge-tracing dataset (3-line, pyKT CSV, JSONL or simulated) split by learner,
trained with the DFM trainer, by default distilled from a DKT teacher trained first in the same job
(`dfm.distill.DistilledDFMTrainer`: train.steps teacher steps, then train.steps DFM steps; train.distill 0:
the DFM alone); held-out test metrics are added at the end."""

from __future__ import annotations

import torch

from lyceum_jobs.configs import DFMPretrainConfig
from lyceum_ml.dfm import DFM, DFMConfig
from lyceum_ml.dfm.data import DatasetSpec, load_dataset
from lyceum_ml.dfm.distill import DistilledDFMTrainer
from lyceum_ml.dfm.simulate import SimConfig
from lyceum_ml.dfm.train import DFMTrainer, TrainConfig, evaluate_split
from lyceum_ml.training import ResumableTrainer
from lyceum_trainer.jobs import Built, JobContext


def build(config: DFMPretrainConfig, ctx: JobContext) -> Built:
    d, t = config.dataset, config.train
    splits = load_dataset(
        DatasetSpec(
            format=d.format,
            train_path=d.train_path,
            test_path=d.test_path,
            valid_path=d.valid_path,
            valid_fraction=d.valid_fraction,
            valid_fold=d.valid_fold,
            seed=d.seed,
            simulation=SimConfig(n_learners=d.n_learners, seed=d.seed),
        )
    )
    torch.manual_seed(t.seed)
    model = DFM(DFMConfig(n_tasks=len(splits.vocab), **config.model.model_dump()))
    train_cfg = TrainConfig(**t.model_dump())  # the job's section mirrors TrainConfig field for field
    metadata = {"name": config.register_as, "source": "dfm_pretrain", "dataset": d.model_dump()}
    train, valid = splits.train.histories, splits.valid.histories
    kind = DistilledDFMTrainer if train_cfg.distill > 0 else DFMTrainer
    trainer: ResumableTrainer = kind(model, train, valid, train_cfg, vocab=splits.vocab, metadata=metadata)

    def final() -> dict[str, float]:
        if splits.test is None or not splits.test.histories:
            return {}
        test = evaluate_split(model, splits.test.histories, t.window)
        return {f"test_{k}": v for k, v in test.items()}

    return trainer, final
