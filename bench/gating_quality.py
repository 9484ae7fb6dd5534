"""Quality of the learned gating policy (issue 15): train it with PPO on the demo gated LM, then the ablation
on held-out TinyStories prompts: random, fixed m = 0.5, neutral (no gating) and learned, mean ± std of the
reward, the diversity reward and the perplexity term; plus a sweep of fixed m, to show where the best
constant lies. Tidal's figures for the same comparison: learned 0.198 vs fixed 0.197, diversity 0.438.

    nice -n 10 python bench/gating_quality.py [--lm DIR] [--iterations 200] [--episodes 96] [--seeds 0 1 2]

Without --lm the demo LM is trained first (~30 s). Prompts: the first 8 tokens of the corpus's stories; the
last --episodes stories are held out for the ablation, the rest train. One torch thread (the CPU budget:
about 100 s of training on this 2-core machine at the defaults)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from lyceum_ml.gating.train import GatingTrainer, prompts_from_texts
from lyceum_ml.lm.data import read_documents

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _gating_setup import add_lm_args, bench_lm  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_lm_args(parser)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--episodes", type=int, default=96, help="held-out episodes per arm and seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sweep", type=float, nargs="*", default=[0.2, 0.3, 0.35, 0.4, 0.6])
    args = parser.parse_args()
    torch.set_num_threads(1)
    lm = bench_lm(args)
    prompts = prompts_from_texts(lm, read_documents([args.corpus]), 8)
    train, held_out = prompts[: -args.episodes], prompts[-args.episodes :]
    trainer = GatingTrainer(lm, train, iterations=args.iterations)
    start = time.perf_counter()
    while trainer.step < trainer.total_steps:
        figures = trainer.run(1)
        if trainer.step % 25 == 0 or trainer.step == trainer.total_steps:
            print(
                f"iteration {trainer.step}: reward {figures['reward']:.4f}"
                f" diversity {figures['reward_div']:.3f} modulation {figures['modulation']:.3f}"
                f" entropy {figures['entropy']:.3f}",
                file=sys.stderr,
                flush=True,
            )
    train_s = time.perf_counter() - start
    ablation = trainer.ablation(held_out, args.episodes, args.seeds)
    for arm, row in ablation["arms"].items():
        cells = "  ".join(
            f"{k} {row[k]['mean']:+.4f} ± {row[k]['std']:.4f}" for k in ("reward", "diversity", "ppl")
        )
        print(f"{arm:<8} {cells}")
    print(
        f"learned vs fixed 0.5: {100 * ablation['learned_vs_fixed']:+.1f} %"
        " (goal: >= +5 % with diversity >= 0.55)"
    )
    sweep = {}
    for m in args.sweep:
        fixed = trainer.ablation(held_out, args.episodes, args.seeds, modulation=m)["arms"]["fixed"]
        sweep[m] = {k: fixed[k]["mean"] for k in ("reward", "diversity", "ppl")}
        print(f"fixed m={m}: reward {sweep[m]['reward']:+.4f} diversity {sweep[m]['diversity']:.3f}")
    summary = {"train_seconds": round(train_s, 1), "iterations": args.iterations, "ablation": ablation}
    print(json.dumps(summary | {"fixed_sweep": sweep}, indent=1))


if __name__ == "__main__":
    main()
