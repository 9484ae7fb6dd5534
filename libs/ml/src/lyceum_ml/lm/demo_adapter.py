"""Builds the demo LoRA adapter that `make run` registers as `lm-demo-tutor`: an untrained LoRA over a Lyceum
LM checkpoint whose B matrices are seeded noise instead of zeros, so that applying it visibly changes what the
model samples. Written in the PEFT layout (`adapter_config.json` + `adapter_model.safetensors`).

    python -m lyceum_ml.lm.demo_adapter --base var/models/lm-demo --out var/models/lm-demo-tutor
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model

from lyceum_ml.lm.checkpoint import load_lm

# Every linear layer of the blocks: attention's projections and the MLP (the gate and embeddings stay base).
TARGET_MODULES = ["q_proj", "kv_proj", "o_proj", "up", "down"]
B_INIT_STD = 0.05  # LoRA's own init zeroes B (a no-op adapter); this makes the demo's effect plain to see


def build_demo_adapter(base_dir: str | Path, out_dir: str | Path, rank: int = 8, seed: int = 0) -> Path:
    """Writes a rank-`rank` LoRA for the LM checkpoint at `base_dir` to `out_dir` atomically (a temporary
    sibling directory renamed into place, replacing what was there); the same seed builds the same adapter."""
    out = Path(out_dir)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=TARGET_MODULES, lora_dropout=0.0)
    # Building the model and LoRA's A matrices draw from the global generator: a forked one, seeded, fixes A
    # and leaves the caller's generator as it was.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        peft_model = get_peft_model(load_lm(base_dir, dtype=torch.float32).model, config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(peft_model.named_parameters()):
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * B_INIT_STD)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        peft_model.save_pretrained(tmp)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True, help="the Lyceum LM checkpoint directory")
    parser.add_argument("--out", type=Path, required=True, help="the adapter directory to write")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.rank < 1:
        parser.error("--rank must be at least 1")
    out = build_demo_adapter(args.base, args.out, rank=args.rank, seed=args.seed)
    print(f"wrote a rank-{args.rank} LoRA for {args.base} to {out}", flush=True)


if __name__ == "__main__":
    main()
