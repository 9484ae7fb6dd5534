"""DFM serving speed: what the KV cache and the shared-prefix forecast buy, measured in one run.

1. append-then-predict after each new event: KV-cached (extend + predict on the cache) vs re-encoding the
   whole history each time (the stateless baseline), at several history lengths.
2. forecast of S sequences x L steps: one batched roll-out over the shared prefix vs S separate roll-outs.

    python bench/dfm_serving.py [--d-model 128 --layers 4] [--threads 2]

Prints median milliseconds and the speed-up ratio (baseline / ours). Same model, same inputs, same process.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from lyceum_ml.dfm import DFM, DFMConfig
from lyceum_ml.dfm import inference as inf


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def bench_update_predict(model: DFM, n_tasks: int, history: int, repeats: int) -> tuple[float, float]:
    g = torch.Generator().manual_seed(history)
    tasks = torch.randint(0, n_tasks, (history + 1,), generator=g)
    outcomes = torch.randint(0, 2, (history + 1,), generator=g).float()
    candidates = torch.randint(0, n_tasks, (8,), generator=g)
    cache = inf.prefill(model, tasks[:history], outcomes[:history])

    def cached() -> None:  # one new event, then predict 8 candidates; the cache is restored afterwards
        length = cache.length
        _, kv = inf.extend(model, cache, tasks[history:], outcomes[history:])
        cache.append(kv)
        inf.predict(model, cache, candidates)
        cache.length = length

    @torch.no_grad()
    def reencode() -> None:  # stateless: re-run the full history + new event for each candidate
        all_tasks = tasks[None].expand(8, -1)
        t = torch.cat([all_tasks, candidates[:, None]], dim=1)
        o = torch.cat([outcomes[None].expand(8, -1), torch.zeros(8, 1)], dim=1)
        model(t, o)

    return median_ms(cached, repeats), median_ms(reencode, repeats)


def bench_forecast(
    model: DFM, n_tasks: int, history: int, S: int, L: int, repeats: int
) -> tuple[float, float]:
    g = torch.Generator().manual_seed(7)
    tasks = torch.randint(0, n_tasks, (history,), generator=g)
    cache = inf.prefill(model, tasks, torch.rand(history, generator=g))
    seqs = torch.randint(0, n_tasks, (S, L), generator=g)
    batched = median_ms(lambda: inf.forecast(model, cache, seqs), repeats)
    one_by_one = median_ms(lambda: [inf.forecast(model, cache, seqs[s : s + 1]) for s in range(S)], repeats)
    return batched, one_by_one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    n_tasks = 200
    cfg = DFMConfig(n_tasks=n_tasks, d_model=args.d_model, n_layer=args.layers, n_head=4, n_kv_head=2)
    model = DFM(cfg).eval()
    print(
        f"DFM d_model={args.d_model} layers={args.layers} params={model.num_parameters():,} "
        f"threads={args.threads} (CPU fp32)"
    )
    print(f"{'history':>8} {'cached ms':>10} {'re-encode ms':>13} {'speed-up':>9}")
    for history in (50, 200, 1000, 2000):
        ours, base = bench_update_predict(model, n_tasks, history, args.repeats)
        print(f"{history:>8} {ours:>10.2f} {base:>13.2f} {base / ours:>8.1f}x")
    S, L, history = 32, 16, 500
    ours, base = bench_forecast(model, n_tasks, history, S, L, max(3, args.repeats // 3))
    print(
        f"forecast S={S} L={L} after {history} events: batched {ours:.1f} ms, one sequence at a time "
        f"{base:.1f} ms, speed-up {base / ours:.1f}x"
    )


if __name__ == "__main__":
    main()
