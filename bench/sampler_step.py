"""Token-wheel step latency: the next-token distribution after appending one token, with the session's KV
cache (extend one token + shape + split) vs re-encoding the whole context (a full forward over every token,
the original design), on the same model: GPT-2-small-shaped (12 layers, d=768, 12 heads, vocab 50257),
random weights built from config.

    OMP_WAIT_POLICY=PASSIVE python bench/sampler_step.py [--contexts 32 256 1024] [--threads 2] [--reps 30]

Both paths go through `HFCausalLM.extend` (logits for the last position only) and the same shape + split, so
they differ only in the cache. Each round times every context, so load from other processes falls on all of
them alike; medians are reported, best times in brackets. On a shared machine set OMP_WAIT_POLICY=PASSIVE:
spinning OpenMP workers stall a step for a whole time slice whenever another process holds a core.
Targets: >= 10x faster at 1024 tokens, and a cached step at 1024 tokens under 30 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

from lyceum_ml.causal_lm_impl import HFCausalLM
from lyceum_ml.sampling import SamplingParams, shape, split

# The shared data: $LYCEUM_SHARED_DATA, else shared/data beside the repository root.
SHARED_DATA = Path(
    os.environ.get("LYCEUM_SHARED_DATA") or Path(__file__).resolve().parents[1].parent / "shared/data"
)
GPT2_TOKENIZER = SHARED_DATA / "gpt2_tokenizer"
PARAMS = SamplingParams()
THRESHOLD, OTHER_TOP_K = 0.01, 10


def timed_ms(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


class Context:
    """One context length: a cache holding all but the last token, and the two ways to get the next
    distribution after appending it."""

    def __init__(self, lm: HFCausalLM, n: int) -> None:
        self.lm, self.n = lm, n
        self.ids = torch.randint(0, 50257, (n,), generator=torch.Generator().manual_seed(n)).tolist()
        self.cache = lm.new_cache()
        lm.extend(self.cache, self.ids[:-1])
        self.logits = lm.extend(lm.new_cache(), self.ids)
        self.times: dict[str, list[float]] = {"cached": [], "full": [], "shape+split": []}

    def distribution(self, logits: torch.Tensor) -> None:
        split(shape(logits, PARAMS, self.ids), THRESHOLD, OTHER_TOP_K)

    def cached(self) -> None:
        self.distribution(self.lm.extend(self.cache, self.ids[-1:]))
        self.lm.truncate(self.cache, self.n - 1)  # the next round appends the same token again

    def full(self) -> None:
        self.distribution(self.lm.extend(self.lm.new_cache(), self.ids))

    def time(self, what: str, fn: Callable[[], object]) -> None:
        self.times[what].append(timed_ms(fn))


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--contexts", type=int, nargs="+", default=[32, 256, 1024])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--full-reps", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    cfg = GPT2Config(
        vocab_size=50257, n_positions=max(1024, *args.contexts), n_embd=768, n_layer=12, n_head=12
    )
    lm = HFCausalLM(
        GPT2LMHeadModel(cfg), GPT2TokenizerFast.from_pretrained(GPT2_TOKENIZER), "gpt2-small-random"
    )
    n_params = sum(p.numel() for p in lm.model.parameters())
    print(
        f"GPT-2-small shape, random weights, {n_params / 1e6:.1f}M params, fp32, CPU, {args.threads} threads"
    )
    print(f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}")
    print(f"load average before: {load_average()} on {os.cpu_count()} CPUs")
    contexts = [Context(lm, n) for n in args.contexts]
    for c in contexts:  # warm-up
        c.cached(), c.full()
    every = max(1, args.reps // args.full_reps)
    for r in range(args.reps):
        for c in contexts:
            c.time("cached", c.cached)
            c.time("shape+split", lambda c=c: c.distribution(c.logits))
            if r % every == 0 and len(c.times["full"]) < args.full_reps:
                c.time("full", c.full)
    print(f"load average after: {load_average()}")

    print("median ms (best in brackets)")
    print(f"{'context':>8} {'cached':>16} {'full re-encode':>18} {'speed-up':>9} {'shape+split':>12}")
    med = {c.n: {k: statistics.median(v) for k, v in c.times.items()} for c in contexts}
    for c in contexts:
        m = med[c.n]
        cached = f"{m['cached']:.1f} ({min(c.times['cached']):.1f})"
        full = f"{m['full']:.1f} ({min(c.times['full']):.1f})"
        print(f"{c.n:>8} {cached:>16} {full:>18} {m['full'] / m['cached']:>8.1f}x {m['shape+split']:>12.2f}")
    if 1024 in med:
        speedup, cached_ms = med[1024]["full"] / med[1024]["cached"], med[1024]["cached"]
        verdict = {True: "met", False: "MISSED"}
        print(f"target >= 10x faster at 1024 tokens: {speedup:.1f}x -> {verdict[speedup >= 10]}")
        print(f"target cached step at 1024 tokens < 30 ms: {cached_ms:.1f} ms -> {verdict[cached_ms < 30]}")


if __name__ == "__main__":
    main()
