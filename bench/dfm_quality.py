"""DFM quality on public knowledge-tracing benchmarks, next to a DKT baseline trained and scored by the same
harness (`lyceum_ml.dfm.train`: same windows, splits, batches, step budget, checkpoint selection, metrics).

    python bench/dfm_quality.py [--quick] [--datasets assist2009,assist2015,statics] [--threads 2]

Splits (the shared copies described in shared/data/README.md):
  assist2009  DKVMN split (dkvmn/assist2009_updated): train on _train1, select on _valid1, report on _test
  assist2015  pyKT split (pykt_assist2015): train_valid.csv folds 1-4 train, fold 0 selects, test.csv reports
  statics     DKVMN split (dkvmn/STATICS): _train1 / _valid1 / _test
Published DKT test AUCs printed for reference (their training budgets were far larger: tens of epochs, GPU):
  assist2009 0.805 and statics 0.802: Zhang et al. 2017, "Dynamic Key-Value Memory Networks for Knowledge
      Tracing" (WWW), Table 3 (DKT 80.53 and 80.20), on these very DKVMN files.
  assist2015 0.7271: Liu et al. 2022, "pyKT: A Python Library to Benchmark Deep Learning based Knowledge
      Tracing Models" (NeurIPS Datasets & Benchmarks), DKT on pyKT's assist2015 split.
Budget (the same for both models on a dataset): STEPS optimizer steps of batches packed up to 32 x 200
events, validation AUC every EVAL_EVERY steps, the best validation checkpoint scored once on test. On two
CPU cores the full run takes about 15 minutes, --quick about 2. Model settings were chosen on validation
data only. Every event of every test sequence is scored, in windows of 200 events that each start from an
empty history (see `dfm.train.windows`); pyKT additionally drops windows shorter than 3 events.
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
STEPS, EVAL_EVERY = 600, 100
QUICK_STEPS = 30


@dataclass(frozen=True)
class Benchmark:
    spec: DatasetSpec
    reference_auc: float  # published DKT test AUC
    reference: str


def benchmarks(root: Path) -> dict[str, Benchmark]:
    def dkvmn(name: str) -> DatasetSpec:
        files = root / "dkvmn" / name
        return DatasetSpec(
            "kt3", files / f"{name}_train1.csv", files / f"{name}_test.csv", files / f"{name}_valid1.csv"
        )

    pykt = root / "pykt_assist2015"
    return {
        "assist2009": Benchmark(dkvmn("assist2009_updated"), 0.805, "DKVMN paper"),
        "assist2015": Benchmark(
            DatasetSpec("pykt", pykt / "train_valid.csv", pykt / "test.csv", valid_fold=0), 0.7271, "pyKT"
        ),
        "statics": Benchmark(dkvmn("STATICS"), 0.802, "DKVMN paper"),
    }


def dfm_model(n_tasks: int) -> nn.Module:
    cfg = DFMConfig(n_tasks=n_tasks, d_model=64, n_layer=2, n_head=4, n_kv_head=2, max_len=2 * WINDOW + 3)
    return DFM(cfg)


def dkt_model(n_tasks: int) -> nn.Module:
    return DKT(DKTConfig(n_tasks=n_tasks, d_embed=200, d_hidden=200, dropout=0.2))


MODELS = {  # name -> (builder, learning rate); the rest of TrainConfig is shared
    "DFM": (dfm_model, 3e-3),
    "DKT": (dkt_model, 3e-3),
}


def fit(name: str, splits: Splits, steps: int, eval_every: int, seed: int) -> dict[str, float]:
    """Trains one model; keeps the weights of its best validation AUC; returns their test metrics."""
    build, lr = MODELS[name]
    torch.manual_seed(seed)
    model = build(len(splits.vocab))
    cfg = TrainConfig(
        steps=steps, batch_size=BATCH, window=WINDOW, lr=lr, warmup_steps=min(50, steps // 10), seed=seed
    )
    trainer = DFMTrainer(model, splits.train.histories, splits.valid.histories, cfg)
    best_auc, best_step, best_state = -1.0, 0, None
    start = time.perf_counter()
    while trainer.step < trainer.total_steps:
        figures = trainer.run(eval_every)
        valid = trainer.evaluate()
        if valid["auc"] > best_auc:
            best_auc, best_step = valid["auc"], trainer.step
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        print(
            f"    {name} step {trainer.step:4d}  loss {figures['loss']:.4f}  valid auc {valid['auc']:.4f}"
            f"  {figures['throughput']:,.0f} events/s",
            flush=True,
        )
    seconds = time.perf_counter() - start
    model.load_state_dict(best_state)
    test = evaluate_split(model, splits.test.histories, WINDOW)  # type: ignore[union-attr]
    params = sum(p.numel() for p in model.parameters())
    return {**test, "valid_auc": best_auc, "best_step": best_step, "seconds": seconds, "params": params}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_STEPS} steps per model: a smoke run")
    parser.add_argument("--datasets", default="assist2009,assist2015,statics")
    parser.add_argument("--steps", type=int, help=f"optimizer steps per model and dataset (default {STEPS})")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=DATA, help="the shared/data folder")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    steps = args.steps or (QUICK_STEPS if args.quick else STEPS)
    eval_every = steps if args.quick else min(EVAL_EVERY, steps)
    table = benchmarks(args.data)
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    unknown = sorted(set(names) - set(table))
    if unknown:
        parser.error(f"unknown dataset(s) {unknown}; choose from {sorted(table)}")

    print(f"{steps} steps per model (batches of up to {BATCH} x {WINDOW} events), {args.threads} threads")
    rows = []
    begin = time.perf_counter()
    for name in names:
        bench = table[name]
        splits = load_dataset(bench.spec)
        n = [len(d.histories) for d in (splits.train, splits.valid, splits.test)]  # type: ignore[union-attr]
        print(f"{name}: {len(splits.vocab)} tasks, train/valid/test learners {n}", flush=True)
        results = {model: fit(model, splits, steps, eval_every, args.seed) for model in MODELS}
        rows.append((name, bench, results))

    print(f"\ntest metrics (best validation checkpoint), total {time.perf_counter() - begin:.0f} s")
    header = (
        "dataset     DFM AUC  DKT AUC  published DKT AUC      DFM acc  DKT acc  DFM BCE  DKT BCE  seconds"
    )
    print(header + "\n" + "-" * len(header))
    for name, bench, r in rows:
        dfm, dkt = r["DFM"], r["DKT"]
        published = f"{bench.reference_auc:.4f} ({bench.reference})"
        print(
            f"{name:<11} {dfm['auc']:.4f}   {dkt['auc']:.4f}   {published:<21}  {dfm['accuracy']:.4f}   "
            f"{dkt['accuracy']:.4f}   {dfm['bce']:.4f}   {dkt['bce']:.4f}   "
            f"{dfm['seconds']:.0f}/{dkt['seconds']:.0f}"
        )
    print(
        "\nparams: "
        + ", ".join(f"{m} {rows[0][2][m]['params']:,.0f} on {rows[0][0]}" for m in MODELS)
        + "; best validation step per model: "
        + "; ".join(f"{n} " + "/".join(f"{r[m]['best_step']:.0f}" for m in MODELS) for n, _, r in rows)
    )


if __name__ == "__main__":
    main()
