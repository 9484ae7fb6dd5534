"""Environment steps per second of gating-policy training (issue 15): B episodes advancing together through
the engine's batched decoding over KV caches (Lyceum's rollout) vs one episode at a time, the whole context
re-encoded at every step without a cache (Tidal's environment), on the same LM with the same policy.

    nice -n 10 python bench/gating.py [--lm DIR] [--envs 16] [--length 50] [--batches 1] [--larger]

An environment step is everything one generated token costs the trainer: the LM's forward, the 64-D
observation, the policy's action, the modulated sampling and the reward. Both arms run the same functions
(lyceum_ml.gating.*); the baseline differs only in how the LM is run: a fresh cache per step over the whole
context (no reuse) and one row per forward. Without --lm the bench trains the demo gated LM first (as
`make run` does, ~30 s) in a temporary folder. --larger adds a second LM of the same shape family, d_model
512 x 8 layers (random weights: throughput does not depend on them), where the forward dominates more.
Torch runs on one thread in both arms, so the ratio is batching and caching, not parallelism.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from lyceum_ml.causal_lm import CausalLM, Feed
from lyceum_ml.causal_lm_impl import LyceumCausalLM
from lyceum_ml.engine import Engine
from lyceum_ml.gating.modulator import NEUTRAL_MODULATION, modulate
from lyceum_ml.gating.observation import observations
from lyceum_ml.gating.policy import GatingPolicy
from lyceum_ml.gating.reward import step_reward
from lyceum_ml.gating.rollout import run_episodes
from lyceum_ml.gating.train import prompts_from_texts
from lyceum_ml.lm.checkpoint import LoadedLM
from lyceum_ml.lm.config import LMConfig
from lyceum_ml.lm.data import read_documents
from lyceum_ml.lm.model import TransformerLM
from lyceum_ml.sampling import shape

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _gating_setup import add_lm_args, bench_lm  # noqa: E402

PROMPT_TOKENS = 8


def uncached_episode(lm: CausalLM, policy: GatingPolicy, prompt: list[int], length: int, seed: int) -> int:
    """One episode, Tidal's way: every step re-encodes prompt + generated from scratch. Returns its steps."""
    generator = torch.Generator().manual_seed(seed)
    context, previous = list(prompt), NEUTRAL_MODULATION
    gate = NEUTRAL_MODULATION if lm.gated else None
    for step in range(length):
        feed = Feed(lm.new_cache(), context, gate=gate, want_hidden=True)
        logits = lm.forward_rows([feed])[0]
        obs = observations([context], logits[None], feed.hidden[None], [step], [length], [previous])
        m = float(policy.act(obs)[0][0])
        params = modulate(m)
        generated = context[len(prompt) :]
        token = int(torch.multinomial(shape(logits, params, context, generated), 1, generator=generator))
        step_reward(logits, params, context, generated, token)
        if token == lm.eos_id:
            return step + 1
        context.append(token)
        previous = m
        gate = m if lm.gated else None
    return length


def measure(lm: CausalLM, prompts: list[list[int]], envs: int, length: int, batches: int) -> dict:
    """Both arms over the same envs * batches prompts and seeds (an EOS ends an episode early in both)."""
    torch.manual_seed(0)
    policy = GatingPolicy().eval()
    engine = Engine(lm, max_rows=envs, step_tokens=max(512, envs * 64))
    run_episodes(engine, prompts[:envs], "learned", length=4, seed=99, policy=policy, sample=True)  # warm-up
    t0, steps = time.perf_counter(), 0
    for i in range(batches):
        batch = prompts[i * envs : (i + 1) * envs]
        eps = run_episodes(engine, batch, "learned", length=length, seed=i, policy=policy, sample=True)
        steps += sum(len(e) for e in eps)
    batched = steps / (time.perf_counter() - t0)
    t0, base_steps = time.perf_counter(), 0
    for i in range(batches * envs):
        base_steps += uncached_episode(lm, policy, prompts[i], length, seed=i)
    baseline = base_steps / (time.perf_counter() - t0)
    return {
        "batched_steps_per_s": round(batched, 1),
        "batched_steps": steps,
        "uncached_steps_per_s": round(baseline, 1),
        "uncached_steps": base_steps,
        "ratio": round(batched / baseline, 1),
    }


def larger(lm: LyceumCausalLM) -> LyceumCausalLM:
    cfg = LMConfig(vocab_size=lm.model.cfg.vocab_size, d_model=512, n_layer=8, n_head=8, n_kv_head=4)
    torch.manual_seed(0)
    model = TransformerLM(cfg).eval()
    return LyceumCausalLM(LoadedLM(model, lm.tokenizer), "larger-512x8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_lm_args(parser)
    parser.add_argument("--envs", type=int, default=16)
    parser.add_argument("--length", type=int, default=50)
    parser.add_argument("--batches", type=int, default=1, help="batches of --envs episodes per arm")
    parser.add_argument("--larger", action="store_true", help="also bench a 512 x 8 LM")
    args = parser.parse_args()
    torch.set_num_threads(1)
    lm = bench_lm(args)
    prompts = prompts_from_texts(lm, read_documents([args.corpus])[-2000:], PROMPT_TOKENS)
    results = {"envs": args.envs, "length": args.length, "torch_threads": 1}
    models = [lm, larger(lm)] if args.larger else [lm]  # type: ignore[arg-type]
    for model in models:
        figures = measure(model, prompts, args.envs, args.length, args.batches)
        results[model.name] = figures
        print(
            f"{model.name}: batched+cached {figures['batched_steps_per_s']} env steps/s vs uncached one at a "
            f"time {figures['uncached_steps_per_s']} -> {figures['ratio']}x",
            flush=True,
        )
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
