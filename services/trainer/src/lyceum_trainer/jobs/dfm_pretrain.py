"""DFM pretraining: a knowledge-tracing dataset (3-line, pyKT CSV, JSONL or simulated) split by learner,
trained with the DFM trainer, distilled from a DKT teacher (`TrainConfig.distill`; 0 trains no teacher);
held-out test metrics are added at the end.

The teacher trains first, inside `build` (about 40% of the DFM's time per step, on the same schedule); its
weights travel in every checkpoint, so a resumed job loads them instead of training it again."""

from __future__ import annotations

import logging

import torch

from lyceum_jobs.configs import DFMPretrainConfig
from lyceum_ml.dfm import DFM, DFMConfig
from lyceum_ml.dfm.data import DatasetSpec, load_dataset
from lyceum_ml.dfm.dkt import DKT, DKTConfig
from lyceum_ml.dfm.simulate import SimConfig
from lyceum_ml.dfm.train import DFMTrainer, TrainConfig, evaluate_split, fit_teacher
from lyceum_trainer.jobs import Built, JobContext

log = logging.getLogger(__name__)


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
    teacher = None
    if train_cfg.distill > 0:
        n_tasks = len(splits.vocab)
        if ctx.resume is None:
            log.info("job %s: training a DKT teacher (%d steps) first", ctx.job_id, train_cfg.steps)
            teacher, figures = fit_teacher(n_tasks, splits.train.histories, splits.valid.histories, train_cfg)
            log.info("job %s: teacher ready, validation %s", ctx.job_id, figures or "none held out")
        else:  # the checkpoint holds its weights (DFMTrainer.load)
            teacher = DKT(DKTConfig(n_tasks=n_tasks))
    trainer = DFMTrainer(
        model,
        splits.train.histories,
        splits.valid.histories,
        train_cfg,
        vocab=splits.vocab,
        metadata={
            "name": config.register_as,
            "source": "dfm_pretrain",
            "dataset": d.model_dump(),
            "teacher": "dkt" if teacher is not None else None,
        },
        teacher=teacher,
    )

    def final() -> dict[str, float]:
        if splits.test is None or not splits.test.histories:
            return {}
        test = evaluate_split(model, splits.test.histories, t.window)
        return {f"test_{k}": v for k, v in test.items()}

    return trainer, final
