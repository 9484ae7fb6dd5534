"""DFM quality on public knowledge-tracing benchmarks, next to a DKT baseline trained and scored by the same
harness (`lyceum_ml.dfm.train`: same windows, splits, batches, step budget, checkpoint selection, metrics).

    python bench/dfm_quality.py [--quick] [--datasets assist2009,assist2015,statics] [--threads 1]

Splits (the shared copies described in shared/data/README.md):
  assist2009  DKVMN split (dkvmn/assist2009_updated): train on _train1, select on _valid1, report on _test
  assist2015  pyKT split (pykt_assist2015): train_valid.csv folds 1-4 train, fold 0 selects, test.csv reports
  statics     DKVMN split (dkvmn/STATICS): _train1 / _valid1 / _test
Published DKT test AUCs, for reference (their own code, training budgets and evaluation details):
  assist2009 0.805 and statics 0.802: Zhang et al. 2017, "Dynamic Key-Value Memory Networks for Knowledge
      Tracing" (WWW), test-AUC table (DKT 80.53 and 80.20), on these very DKVMN files.
  assist2015 0.7271: Liu et al. 2022, "pyKT: A Python Library to Benchmark Deep Learning based Knowledge
      Tracing Models" (NeurIPS Datasets & Benchmarks), DKT on pyKT's assist2015 split.
Budget, the same for both models on a dataset: a fixed number of optimizer steps (assist2009 500, assist2015
800, statics 200: STATICS has 193 training learners and both models overfit it within ~10 epochs) of batches
packed up to 32 x 200 events, validation AUC every 1/8 of the run, and the best validation checkpoint scored
once on test. One torch thread: on the shared 2-core machine two threads ran 2.5x slower. The full run took
9-10 minutes (up to ~15 on a busy machine), --quick (20 steps each, one evaluation) about 1. DFM settings were
compared on validation data only (d_model 64/96, 2/3 layers, lr 1e-3 to 6e-3, weight decay: all within 0.002
AUC; the cheapest kept).
Every event of every test sequence is scored, in windows of 200 events that each start from an empty
history (see `dfm.train.windows`); pyKT additionally drops windows shorter than 3 events.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lyceum_ml.dfm import DFM, DFMConfig
from lyceum_ml.dfm.data import DatasetSpec, Splits, load_dataset
from lyceum_ml.dfm.dkt import DKT, DKTConfig
from lyceum_ml.dfm.train import DFMTrainer, TrainConfig, evaluate_split

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
WINDOW, BATCH = 200, 32
QUICK_STEPS = 20


@dataclass(frozen=True)
class Benchmark:
    spec: DatasetSpec
    steps: int  # optimizer steps per model
    reference_auc: float  # published DKT test AUC
    reference: str


def benchmarks(root: Path) -> dict[str, Benchmark]:
    def dkvmn(name: str) -> DatasetSpec:
        files = root / "dkvmn" / name
        return DatasetSpec(
            "kt3", files / f"{name}_train1.csv", files / f"{name}_test.csv", files / f"{name}_valid1.csv"
        )

    pykt = DatasetSpec(
        "pykt",
        root / "pykt_assist2015" / "train_valid.csv",
        root / "pykt_assist2015" / "test.csv",
        valid_fold=0,
    )
    return {
        "assist2009": Benchmark(dkvmn("assist2009_updated"), 500, 0.805, "DKVMN paper"),
        "assist2015": Benchmark(pykt, 800, 0.7271, "pyKT"),
        "statics": Benchmark(dkvmn("STATICS"), 200, 0.802, "DKVMN paper"),
    }


def dfm_model(n_tasks: int) -> nn.Module:
    cfg = DFMConfig(n_tasks=n_tasks, d_model=64, n_layer=2, n_head=4, n_kv_head=2, max_len=2 * WINDOW + 3)
    return DFM(cfg)


def dkt_model(n_tasks: int) -> nn.Module:
    return DKT(DKTConfig(n_tasks=n_tasks, d_embed=200, d_hidden=200, dropout=0.2))


MODELS = {"DFM": dfm_model, "DKT": dkt_model}


def fit(name: str, splits: Splits, steps: int, eval_every: int, seed: int) -> dict[str, float]:
    """Trains one model, keeps the weights of its best validation AUC and returns their test metrics."""
    torch.manual_seed(seed)
    model = MODELS[name](len(splits.vocab))
    cfg = TrainConfig(
        steps=steps, batch_size=BATCH, window=WINDOW, lr=3e-3, warmup_steps=steps // 10, seed=seed
    )
    trainer = DFMTrainer(model, splits.train.histories, splits.valid.histories, cfg)
    best: dict[str, float] = {"valid_auc": -1.0}
    state: dict[str, torch.Tensor] = {}
    start = time.perf_counter()
    while trainer.step < trainer.total_steps:
        figures = trainer.run(eval_every)
        valid = trainer.evaluate()
        if valid["auc"] > best["valid_auc"]:
            best = {"valid_auc": valid["auc"], "best_step": trainer.step}
            state = {k: v.clone() for k, v in model.state_dict().items()}
        print(
            f"  {name} step {trainer.step:4d}  loss {figures['loss']:.4f}  valid auc {valid['auc']:.4f}"
            f"  {figures['throughput']:,.0f} events/s",
            flush=True,
        )
    seconds = time.perf_counter() - start
    model.load_state_dict(state)
    test = evaluate_split(model, splits.test.histories, WINDOW)  # type: ignore[union-attr]
    return {**test, **best, "seconds": seconds, "params": sum(p.numel() for p in model.parameters())}


@dataclass
class Row:
    name: str
    bench: Benchmark
    steps: int
    results: dict[str, dict[str, float]]  # model -> test metrics and run figures


def report(rows: list[Row]) -> None:
    print(
        "\ntest metrics at the best validation checkpoint (same harness, same run)\n"
        "dataset     DFM AUC  DKT AUC  published DKT AUC      DFM acc  DKT acc  DFM BCE  DKT BCE  steps"
        "  seconds DFM/DKT\n" + "-" * 107
    )
    for row in rows:
        dfm, dkt = row.results["DFM"], row.results["DKT"]
        published = f"{row.bench.reference_auc:.4f} ({row.bench.reference})"
        print(
            f"{row.name:<11} {dfm['auc']:.4f}   {dkt['auc']:.4f}   {published:<21}  {dfm['accuracy']:.4f}   "
            f"{dkt['accuracy']:.4f}   {dfm['bce']:.4f}   {dkt['bce']:.4f}   {row.steps:>5}  "
            f"{dfm['seconds']:>7.0f}/{dkt['seconds']:.0f}"
        )
    for row in rows:
        r = row.results
        print(
            f"{row.name}: "
            + "; ".join(
                f"{m} {r[m]['params']:,.0f} params, best valid auc {r[m]['valid_auc']:.4f} "
                f"at step {r[m]['best_step']:.0f}, test ece {r[m]['ece']:.4f}"
                for m in MODELS
            )
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_STEPS} steps per model: a smoke run")
    parser.add_argument("--datasets", default="assist2009,assist2015,statics", help="comma-separated")
    parser.add_argument("--steps", type=int, help="optimizer steps per model, for every dataset")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=DATA, help="the shared/data folder")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    table = benchmarks(args.data)
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    unknown = sorted(set(names) - set(table))
    if unknown:
        parser.error(f"unknown dataset(s) {unknown}; choose from {sorted(table)}")

    begin = time.perf_counter()
    rows = []
    for name in names:
        bench = table[name]
        steps = args.steps or (QUICK_STEPS if args.quick else bench.steps)
        splits = load_dataset(bench.spec)
        sizes = [len(d.histories) for d in (splits.train, splits.valid, splits.test)]  # type: ignore[union-attr]
        print(
            f"{name}: {len(splits.vocab)} tasks, train/valid/test learners {sizes}, {steps} steps", flush=True
        )
        every = steps if args.quick else max(1, steps // 8)
        results = {model: fit(model, splits, steps, every, args.seed) for model in MODELS}
        rows.append(Row(name, bench, steps, results))
    report(rows)
    print(f"total {time.perf_counter() - begin:.0f} s, {args.threads} torch thread(s)")


if __name__ == "__main__":
    main()
