"""LM training overhead: tokens/s of `LMTrainer.run` vs a plain loop (forward, backward, AdamW step, nothing
else) on the same model, batches and optimizer, measured in one run in alternating rounds.

    python bench/lm_train_throughput.py [--d-model 128 --layers 4 --seq-len 128 --batch 8] [--threads 1]

The trainer adds the LR schedule, gradient clipping, loss bookkeeping and on-the-fly batch sampling; the
reference gets its batches pre-made. Prints both throughputs (median round) and the overhead: the median over
rounds of the paired time ratio (target < 5%). One thread by default: on a shared 2-core machine two OpenMP
threads stall whenever anything else runs, and that noise swamps a difference of a few percent.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

from lyceum_ml.lm import LMConfig, TransformerLM
from lyceum_ml.lm.data import BatchSampler, read_documents, tokenize_documents, train_val_split
from lyceum_ml.lm.train import LMTrainConfig, LMTrainer, param_groups
from lyceum_ml.tokenization import train_bpe

# The shared data: $LYCEUM_SHARED_DATA, else shared/data beside the repository root.
SHARED_DATA = Path(
    os.environ.get("LYCEUM_SHARED_DATA") or Path(__file__).resolve().parents[1].parent / "shared/data"
)
CORPUS = SHARED_DATA / "tinystories" / "tinystories_val_head.txt"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    ap.add_argument("--vocab", type=int, default=2048)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--steps-per-round", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    docs = read_documents([args.corpus])
    tokenizer = train_bpe(docs, args.vocab)
    train_docs, val_docs = train_val_split(docs, 0.02, seed=0)
    train, val = tokenize_documents(train_docs, tokenizer), tokenize_documents(val_docs, tokenizer)

    warmup, k = 3, args.steps_per_round
    cfg = LMTrainConfig(
        steps=warmup + args.rounds * k, batch_size=args.batch, seq_len=args.seq_len, lr=1e-3, warmup_steps=5
    )
    model_cfg = LMConfig(
        vocab_size=args.vocab, d_model=args.d_model, n_layer=args.layers, max_seq_len=args.seq_len
    )
    torch.manual_seed(0)
    trainer = LMTrainer(TransformerLM(model_cfg), tokenizer, train, val, cfg, device="cpu")

    # the reference: an identical copy (gates frozen alike), the same AdamW groups, the same batches pre-made
    ref = copy.deepcopy(trainer.raw_model).train()
    opt = torch.optim.AdamW(param_groups(ref, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas)
    sampler = BatchSampler(train, cfg.batch_size, cfg.seq_len, cfg.seed)
    batches = [sampler.next() for _ in range(cfg.steps)]

    def reference(first: int, n: int) -> None:
        for x, y in batches[first : first + n]:
            _, loss = ref(x, targets=y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

    def timed(fn: Callable[[], object]) -> tuple[float, float]:
        """(wall seconds, process CPU seconds) of one call."""
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        return time.perf_counter() - wall, time.process_time() - cpu

    trainer.run(warmup)
    reference(0, warmup)
    rounds: list[tuple[tuple[float, float], tuple[float, float]]] = []  # (reference, LMTrainer) per round
    for r in range(args.rounds):  # alternate who goes first so drift on a shared machine hits both alike
        first = warmup + r * k
        if r % 2:
            ours = timed(partial(trainer.run, k))
            rounds.append((timed(partial(reference, first, k)), ours))
        else:
            ref_t = timed(partial(reference, first, k))
            rounds.append((ref_t, timed(partial(trainer.run, k))))

    # medians of back-to-back pairs: on a shared machine a round is now and then stalled by other work, and a
    # mean would mostly measure those stalls. CPU time is also reported: other processes barely move it.
    tokens = k * cfg.batch_size * cfg.seq_len
    print(
        f"model {trainer.raw_model.num_parameters() / 1e6:.2f}M params, "
        f"batch {cfg.batch_size}x{cfg.seq_len}, {args.threads} thread(s); "
        f"medians of {args.rounds} alternating rounds of {k} steps"
    )
    for clock, i in (("wall", 0), ("CPU", 1)):
        ref_tps = tokens / statistics.median(ref[i] for ref, _ in rounds)
        ours_tps = tokens / statistics.median(ours[i] for _, ours in rounds)
        ratios = [100 * (ours[i] / ref[i] - 1) for ref, ours in rounds]
        q1, median, q3 = statistics.quantiles(ratios, n=4)
        print(
            f"{clock:>4}: reference {ref_tps:,.0f} tok/s, LMTrainer {ours_tps:,.0f} tok/s, "
            f"overhead {median:.1f}% (quartiles {q1:.1f}% .. {q3:.1f}%)"
        )


if __name__ == "__main__":
    main()
