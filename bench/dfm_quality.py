"""DFM quality on public knowledge-tracing benchmarks, next to baselines trained and scored by one harness
(`lyceum_ml.dfm.train`: same windows, splits, batches, budget grid, checkpoint selection, metrics): DKT (an
LSTM over (skill, correct)) and, with --models DFM,DKT,SAKT, SAKT (one attention block). Ablations: the DFM
with one feature switched off, e.g. --models DFM,DFM-no-recency (names in ABLATIONS).

    python bench/dfm_quality.py [--quick] [--datasets assist2009,assist2015,statics] [--models DFM,DKT]
                                [--seeds 0,1,2] [--steps N[,N...]] [--threads 1] [--workers 1]

The DFM is built from DFMConfig's defaults and trained as `dfm_pretrain` jobs train it: distilled from a DKT
teacher (`TrainConfig.distill`: targets half outcome, half the teacher's probability). Its teacher is this
run's DKT of the same seed and budget (the model `dfm.distill.fit_teacher` trains; without DKT in --models, it
is trained), so the DFM - DKT margin is a student against its own teacher, and the teacher's training time is
not in the DFM's s/seed. DFM-no-teacher is the same DFM trained on the outcomes alone; DKT-distilled is the
DKT trained by the DFM's recipe (distilled from this run's DKT), what distillation alone gives a student.
Splits (the shared copies described in shared/data/README.md):
  assist2009  DKVMN split (dkvmn/assist2009_updated): train on _train1, select on _valid1, report on _test
  assist2015  pyKT split (pykt_assist2015): train_valid.csv folds 1-4 train, fold 0 selects, test.csv reports
  statics     DKVMN split (dkvmn/STATICS): _train1 / _valid1 / _test
Two scoring protocols on the same checkpoint (`dfm.train.evaluate_split`), both over non-overlapping windows
of 200 events that each start from an empty history:
  all   every event of every window, window starts included (what the DKVMN paper's code does)
  pykt  pyKT's test_sequences protocol: windows under 3 events dropped, each window's first event unscored
Published DKT test AUCs, for reference (their own code, training budgets and evaluation details):
  assist2009 0.805 and statics 0.802: Zhang et al. 2017, "Dynamic Key-Value Memory Networks for Knowledge
      Tracing" (WWW), test-AUC table (DKT 80.53 and 80.20), on these very DKVMN files (protocol "all").
  assist2015 0.7271: Liu et al. 2022, "pyKT: A Python Library to Benchmark Deep Learning based Knowledge
      Tracing Models" (NeurIPS Datasets & Benchmarks), DKT on pyKT's assist2015 split (protocol "pykt").
Budget: a small grid of optimizer-step budgets per dataset, the same grid for every model (assist2009
350/500, assist2015 800/1200, statics 200/300: STATICS has 193 training learners and every model overfits it
within ~10 epochs), of batches packed up to 32 x 200 events under warmup + cosine decay to the run's end.
Every model trains once per seed and budget, validation AUC every 1/8 of a run; each model then takes the
budget with its best mean validation AUC over seeds (never test), and that budget's best validation
checkpoints are scored on test. The schedule's length is a hyper-parameter like any other, and one equal
budget favours whichever model it suits (at 500 steps on assist2009 DKT peaks by step ~300 and overfits,
the DFM is still improving). The table gives mean ± sample std over seeds and the DFM - DKT margin paired
by seed; a second table lists every budget, so the equal-budget margins stay visible. The grids came from
validation probes (assist2009, seed 0: DKT 350/500/750 steps 0.8261/0.8254/0.8228, DFM 0.8244/0.8252/0.8252,
so 750 was dropped as 1.5x the cost for nothing; assist2015, 3 seeds: DKT 800/1200 0.7302/0.7287, DFM
0.7312/0.7317). One torch thread: on the shared 2-core machine two threads ran 2.5x slower.
The last table breaks each model's validation AUC down by the learner's earlier attempts at the event's task
in its window (0 = a first attempt, which leans on the outcomes of other tasks) and scores the DFM's and DKT's
probabilities averaged next to two DFM seeds averaged: where a margin comes from, and how much each model
knows that the other does not beyond what averaging alone buys.
CPU cost on the 2-core machine with --workers 2 (one torch thread each), --models DFM,DKT,DKT-distilled:
--datasets assist2009 23 min, statics 18 min, assist2015 --steps 800 24 min. Per seed the DFM took 265 s on
ASSIST2009 at 500 steps with its teacher's forward pass in every step (214 s without, an earlier run), the DKT
75 s at 350 steps (its own training is what a job adds before the DFM). --quick (20 steps each, one
evaluation): about a minute.
DFM settings were chosen on validation data only (ablations: the closing notes of issue 16): distillation from
a DKT teacher (ASSIST2009 valid AUC, 500 steps, seeds 0/1: 0.8251/0.8251 without, 0.8274/0.8268 at distill
0.5, teachers 0.8267/0.8255; 0.8267 at 0.3 and 0.8274 at 0.7 on seed 0), outcome tokens carrying their task, a
task-specific read-out, dropout 0.1 (ASSIST2009 valid AUC, seed 0, 500 steps: dropout 0.2 0.8212, 0.1 0.8235,
0 0.8225; same-harness DKT 0.8254) and a learned per-head recency bias on attention (0.8235 without, 0.8253
with); d_model 64/96 and 2/3 layers, lr 1e-3 to 6e-3 and weight decay were all within 0.002 AUC, so the
cheapest was kept; 1000 steps overfit (DFM 0.8203, DKT 0.8240). With the teacher (ASSIST2009 valid AUC, seed
0; the default at 500 steps 0.8277): 750 steps 0.8273 (its DKT teacher overfits, 0.8228), d_model 128 0.8264
(2.5x the time), n_layer 3 0.8268, and a second DFM taught by the DKT and the first DFM averaged 0.8273 (a
DKT taught by that pair: 0.8281). Training windows cut at a random offset each epoch (both models, seeds
0/1): DFM at 500 steps 0.8272/0.8263, DKT at 350 0.8259/0.8262, no gain, so windows stay fixed.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lyceum_ml.dfm import DFM, DFMConfig
from lyceum_ml.dfm.data import DatasetSpec, Splits, load_dataset
from lyceum_ml.dfm.distill import fit_teacher
from lyceum_ml.dfm.dkt import DKT, DKTConfig
from lyceum_ml.dfm.sakt import SAKT, SAKTConfig
from lyceum_ml.dfm.train import (
    DFMTrainer,
    Predictions,
    Protocol,
    TrainConfig,
    evaluate_split,
    predict_split,
)
from lyceum_ml.metrics import roc_auc

# The shared data: $LYCEUM_SHARED_DATA, else shared/data beside the repository root.
DATA = Path(
    os.environ.get("LYCEUM_SHARED_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data"
)
WINDOW, BATCH = 200, 32
QUICK_STEPS = 20


@dataclass(frozen=True)
class Benchmark:
    spec: DatasetSpec
    budgets: tuple[int, ...]  # optimizer-step budgets every model trains at; each picks one on validation
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
        "assist2009": Benchmark(dkvmn("assist2009_updated"), (350, 500), 0.805, "DKVMN paper"),
        "assist2015": Benchmark(pykt, (800, 1200), 0.7271, "pyKT"),
        "statics": Benchmark(dkvmn("STATICS"), (200, 300), 0.802, "DKVMN paper"),
    }


def dfm_model(n_tasks: int, **changes: Any) -> nn.Module:
    """The DFM as `dfm_pretrain` jobs build it by default (DFMConfig's defaults), sized to the window;
    `changes` override defaults (the ablations)."""
    return DFM(DFMConfig(n_tasks=n_tasks, max_len=2 * WINDOW + 3, **changes))


def dkt_model(n_tasks: int) -> nn.Module:
    """DKTConfig's defaults (200-wide embeddings and LSTM, dropout 0.2): also the DFM's teacher
    (`dfm.distill.fit_teacher`)."""
    return DKT(DKTConfig(n_tasks=n_tasks))


def sakt_model(n_tasks: int) -> nn.Module:
    return SAKT(SAKTConfig(n_tasks=n_tasks, d_model=64, n_head=4, max_len=WINDOW, dropout=0.2))


# The DFM with one of its quality features switched off, each to its LEGACY value (what checkpoints from
# before the feature were trained with): `--models DFM,DFM-no-recency,...` gives the ablation rows.
ABLATIONS = {
    "DFM-scalar-outcome": "outcome_embedding",
    "DFM-no-readout": "task_readout",
    "DFM-no-dropout": "dropout",
    "DFM-no-recency": "recency_bias",
}
NO_TEACHER = "DFM-no-teacher"  # the DFM trained on the outcomes alone (TrainConfig.distill 0)
# DKT under the DFM's recipe: distilled from this run's DKT of the same seed and budget (a DKT teaching
# itself), so the DFM - DKT margin can be read apart from what distillation alone buys any student.
SELF_DISTILLED_DKT = "DKT-distilled"
MODELS: dict[str, Callable[[int], nn.Module]] = {
    "DFM": dfm_model,
    "DKT": dkt_model,
    "SAKT": sakt_model,
    **{name: partial(dfm_model, **{field: DFMConfig.LEGACY[field]}) for name, field in ABLATIONS.items()},
    NO_TEACHER: dfm_model,
    SELF_DISTILLED_DKT: dkt_model,
}
# The best-validation DKT weights of this run by (dataset, budget, seed): a DFM's teacher when DKT is in
# --models (fit_teacher would train the very same model: same config, seed, schedule and selection).
TEACHERS: dict[tuple[str, int, int], dict[str, torch.Tensor]] = {}


def teacher_for(dataset: str, splits: Splits, cfg: TrainConfig) -> nn.Module:
    """The DKT teacher `dfm_pretrain` jobs distill from, for one DFM run: this run's DKT of the same budget
    and seed when it trained one, else a fresh `fit_teacher`."""
    state = TEACHERS.get((dataset, cfg.steps, cfg.seed))
    if state is None:
        return fit_teacher(len(splits.vocab), splits.train.histories, splits.valid.histories, cfg)[0]
    teacher = dkt_model(len(splits.vocab))
    teacher.load_state_dict(state)
    return teacher


PROTOCOLS: tuple[Protocol, ...] = ("all", "pykt")


def fit(dataset: str, name: str, splits: Splits, steps: int, eval_every: int, seed: int) -> dict[str, Any]:
    """Trains one model, distilled from this run's DKT when it is DKT-distilled or a DFM other than
    DFM-no-teacher, keeps the weights of its best validation AUC and returns their test metrics under both
    protocols (`all_auc`, `pykt_auc`, ...) and their validation predictions (`valid`, for the breakdown)."""
    cfg = TrainConfig(steps=steps, batch_size=BATCH, window=WINDOW, warmup_steps=steps // 10, seed=seed)
    distilled = (name.startswith("DFM") and name != NO_TEACHER) or name == SELF_DISTILLED_DKT
    teacher = teacher_for(dataset, splits, cfg) if distilled else None
    torch.manual_seed(seed)
    model = MODELS[name](len(splits.vocab))
    trainer = DFMTrainer(model, splits.train.histories, splits.valid.histories, cfg, teacher=teacher)
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
            f"  {name} seed {seed} step {trainer.step:4d}  loss {figures['loss']:.4f}"
            f"  valid auc {valid['auc']:.4f}  {figures['throughput']:,.0f} events/s",
            flush=True,
        )
    seconds = time.perf_counter() - start
    model.load_state_dict(state)
    if name == "DKT":
        TEACHERS[dataset, steps, seed] = state
    out: dict[str, Any] = {**best, "seconds": seconds, "params": sum(p.numel() for p in model.parameters())}
    out["valid"] = predict_split(model, splits.valid.histories, WINDOW)  # type: ignore[union-attr]
    for protocol in PROTOCOLS:
        test = evaluate_split(model, splits.test.histories, WINDOW, protocol=protocol)  # type: ignore[union-attr]
        out |= {f"{protocol}_{k}": v for k, v in test.items()}
    return out


@cache
def splits_of(spec: DatasetSpec) -> Splits:
    return load_dataset(spec)


def fit_cell(
    dataset: str, spec: DatasetSpec, models: list[str], quick: bool, cell: tuple[int, int]
) -> dict[str, Any]:
    """Every model at one (budget, seed): DKT first, its weights being the DFMs' teachers. The unit of
    --workers: a cell's models run in one process, so each DFM finds its teacher in TEACHERS."""
    budget, seed = cell
    splits = splits_of(spec)
    eval_every = budget if quick else max(1, budget // 8)
    return {
        m: fit(dataset, m, splits, budget, eval_every, seed) for m in sorted(models, key=lambda m: m != "DKT")
    }


def fit_cells(
    dataset: str,
    spec: DatasetSpec,
    models: list[str],
    quick: bool,
    cells: list[tuple[int, int]],
    workers: int,
    threads: int,
) -> dict[tuple[int, int], dict[str, Any]]:
    """`fit_cell` for every (budget, seed): in this process, or in `workers` processes of `threads` torch
    threads each (a cell's results do not depend on where it ran)."""
    work = partial(fit_cell, dataset, spec, models, quick)
    if workers <= 1:
        return {cell: work(cell) for cell in cells}
    with ProcessPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(threads,)) as pool:
        return dict(zip(cells, pool.map(work, cells), strict=True))


Runs = list[dict[str, Any]]  # per seed: test metrics and figures (floats), validation predictions ("valid")


@dataclass
class Row:
    name: str
    bench: Benchmark
    budgets: tuple[int, ...]
    results: dict[str, dict[int, Runs]]  # model -> budget -> runs

    def chosen(self, model: str) -> int:
        """The model's budget: the best mean validation AUC over seeds (the smaller budget on a tie)."""
        by_budget = self.results[model]
        return max(self.budgets, key=lambda b: (np.mean([r["valid_auc"] for r in by_budget[b]]), -b))

    def selected(self, model: str) -> Runs:
        return self.results[model][self.chosen(model)]


def spread(values: list[float], signed: bool = False) -> str:
    """mean ± sample std (± 0 for one value); `signed` writes the mean's sign (a margin)."""
    a = np.asarray(values)
    return f"{a.mean():{'+' if signed else ''}.4f} ± {a.std(ddof=1) if len(a) > 1 else 0.0:.4f}"


def paired_margin(dfm: Runs, dkt: Runs, key: str) -> str:
    """DFM - DKT, paired by seed."""
    return spread([a[key] - b[key] for a, b in zip(dfm, dkt, strict=True)], signed=True)


def report(rows: list[Row], models: list[str], seeds: list[int]) -> None:
    print(
        "\ntest AUC at the best validation checkpoint of each model's validation-chosen budget,"
        f" mean ± std over seeds {seeds}, one harness\n"
        "protocol all:  every event of every 200-event window (DKVMN's code); "
        "pykt: windows >= 3 events, first event of each unscored (pyKT's test_sequences)"
    )
    width = max(15, *map(len, models))
    header = f"{'dataset':<11} {'protocol':<8} " + " ".join(f"{m:<{width}}" for m in models)
    header += "  DFM - DKT (paired)  published DKT"
    print(header + "\n" + "-" * len(header))
    for row in rows:
        for protocol in PROTOCOLS:
            key = f"{protocol}_auc"
            cells = " ".join(f"{spread([r[key] for r in row.selected(m)]):<{width}}" for m in models)
            margin = ""
            if "DFM" in row.results and "DKT" in row.results:
                margin = paired_margin(row.selected("DFM"), row.selected("DKT"), key)
            published = f"{row.bench.reference_auc:.4f} ({row.bench.reference})" if protocol == "all" else ""
            print(f"{row.name:<11} {protocol:<8} {cells}  {margin:<18}  {published}")
    print("\nevery budget (chosen = best mean valid AUC; test protocol all):")
    for row in rows:
        for budget in row.budgets:
            cells = "  ".join(
                f"{m} valid {spread([r['valid_auc'] for r in row.results[m][budget]])}"
                f"{'*' if row.chosen(m) == budget else ' '}"
                for m in models
            )
            margin = ""
            if "DFM" in row.results and "DKT" in row.results:
                margin = "  DFM - DKT test " + paired_margin(
                    row.results["DFM"][budget], row.results["DKT"][budget], "all_auc"
                )
            print(f"  {row.name:<11} {budget:5d} steps  {cells}{margin}")
    print()
    for row in rows:
        for m in models:
            r = row.selected(m)
            print(
                f"{row.name} {m}: {r[0]['params']:,.0f} params, {row.chosen(m)} steps, "
                f"valid auc {spread([x['valid_auc'] for x in r])} at {[int(x['best_step']) for x in r]}, "
                f"test auc per seed {[round(x['all_auc'], 4) for x in r]}, "
                f"test acc {spread([x['all_accuracy'] for x in r])}, "
                f"bce {spread([x['all_bce'] for x in r])}, "
                f"ece {spread([x['all_ece'] for x in r])}, {np.mean([x['seconds'] for x in r]):.0f} s/seed"
            )


# Validation events grouped by how often the learner met the event's task earlier in its window: where a
# margin comes from (a first attempt leans on other tasks' outcomes, a repeat on the same task's own).
ATTEMPT_BUCKETS: tuple[tuple[int, int | None], ...] = ((0, 0), (1, 1), (2, 3), (4, 7), (8, None))


def bucket_label(lo: int, hi: int | None) -> str:
    return f"{lo}+" if hi is None else str(lo) if lo == hi else f"{lo}-{hi}"


def in_bucket(predictions: Predictions, lo: int, hi: int | None) -> np.ndarray:
    attempts = predictions.attempts
    return attempts >= lo if hi is None else (attempts >= lo) & (attempts <= hi)


def averaged(a: Predictions, b: Predictions) -> Predictions:
    """The two models' probabilities averaged, event by event (both predicted the same split)."""
    if not np.array_equal(a.y, b.y) or not np.array_equal(a.attempts, b.attempts):
        raise ValueError("predictions of different events cannot be averaged")
    return Predictions(a.y, (a.p + b.p) / 2, a.attempts)


def bucket_auc(predictions: Predictions, lo: int, hi: int | None) -> float:
    where = in_bucket(predictions, lo, hi)
    return roc_auc(predictions.y[where], predictions.p[where])


def breakdown(rows: list[Row], models: list[str]) -> None:
    """Validation AUC per `ATTEMPT_BUCKETS` bucket (empty ones left out) for each model at its chosen budget
    (mean ± std over seeds), the DFM - DKT margin paired by seed, and the AUC of the two models averaged
    ("DFM+DKT"), next to the DFM averaged with its own next seed ("DFM+DFM", with 2+ seeds): what averaging
    alone buys, so the gap between the two columns is what each model knows that the other does not."""
    pair = "DFM" in models and "DKT" in models
    print(
        "\nwhere the margin comes from: validation AUC by the learner's earlier attempts at the event's task"
        " in its window\n(each model's chosen budget, mean ± std over seeds"
        + (
            "; DFM+DKT: the two models' probabilities averaged, seed by seed;\n"
            "DFM+DFM: each DFM seed averaged with the next, what averaging alone buys)"
            if pair
            else ")"
        )
    )
    width = max(15, *map(len, models))
    header = f"{'dataset':<11} {'attempts':<8} {'events':>7} " + " ".join(f"{m:<{width}}" for m in models)
    header += f"  DFM - DKT (paired)  {'DFM+DKT':<15} DFM+DFM" if pair else ""
    print(header + "\n" + "-" * len(header))
    for row in rows:
        valid = {m: [r["valid"] for r in row.selected(m)] for m in models}
        if pair:
            dfm = valid["DFM"]
            both = [averaged(a, b) for a, b in zip(dfm, valid["DKT"], strict=True)]
            selves = (
                [averaged(a, b) for a, b in zip(dfm, dfm[1:] + dfm[:1], strict=True)] if len(dfm) > 1 else []
            )
        for lo, hi in (*ATTEMPT_BUCKETS, (0, None)):
            events = int(in_bucket(valid[models[0]][0], lo, hi).sum())
            if not events:
                continue
            auc = {m: [bucket_auc(v, lo, hi) for v in valid[m]] for m in models}
            cells = " ".join(f"{spread(auc[m]):<{width}}" for m in models)
            if pair:
                margin = spread([a - b for a, b in zip(auc["DFM"], auc["DKT"], strict=True)], signed=True)
                cells += f"  {margin:<18}  {spread([bucket_auc(p, lo, hi) for p in both]):<15} "
                cells += spread([bucket_auc(p, lo, hi) for p in selves]) if selves else "-"
            label = "all" if (lo, hi) == (0, None) else bucket_label(lo, hi)
            print(f"{row.name:<11} {label:<8} {events:>7} {cells}")


def budget_grid(text: str) -> tuple[int, ...]:
    try:
        budgets = tuple(int(b) for b in text.split(",") if b.strip())
    except ValueError:
        budgets = ()
    if not budgets or min(budgets) < 1:
        raise argparse.ArgumentTypeError(f"expected positive step counts like 500,750, got {text!r}")
    return budgets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_STEPS} steps per model: a smoke run")
    parser.add_argument("--datasets", default="assist2009,assist2015,statics", help="comma-separated")
    parser.add_argument("--models", default="DFM,DKT", help=f"comma-separated, from {sorted(MODELS)}")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated; every model trains once per seed")
    parser.add_argument(
        "--steps",
        type=budget_grid,
        help="optimizer-step budgets for every dataset, comma-separated (each model picks one on validation)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument(
        "--workers", type=int, default=1, help="processes training (budget, seed) cells side by side"
    )
    parser.add_argument("--data", type=Path, default=DATA, help="the shared/data folder")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    table = benchmarks(args.data)
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    steps = args.steps or ()
    unknown = sorted(set(names) - set(table)) + sorted(set(models) - set(MODELS))
    if unknown or not seeds or not models or not names:
        parser.error(f"unknown dataset(s)/model(s) {unknown}, or none given, or no seeds; see --help")

    begin = time.perf_counter()
    rows = []
    for name in names:
        bench = table[name]
        budgets = steps or ((QUICK_STEPS,) if args.quick else bench.budgets)
        splits = splits_of(bench.spec)
        sizes = [len(d.histories) for d in (splits.train, splits.valid, splits.test)]  # type: ignore[union-attr]
        print(
            f"{name}: {len(splits.vocab)} tasks, train/valid/test learners {sizes}, budgets {budgets} steps",
            flush=True,
        )
        done = fit_cells(
            name,
            bench.spec,
            models,
            args.quick,
            [(b, s) for b in budgets for s in seeds],
            args.workers,
            args.threads,
        )
        results = {m: {b: [done[b, s][m] for s in seeds] for b in budgets} for m in models}
        rows.append(Row(name, bench, budgets, results))
    report(rows, models, seeds)
    breakdown(rows, models)
    print(
        f"total {time.perf_counter() - begin:.0f} s, {args.workers} process(es)"
        f" of {args.threads} torch thread(s)"
    )


if __name__ == "__main__":
    main()
