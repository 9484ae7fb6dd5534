"""What the gating benches share: the LM they run (a Lyceum LM checkpoint, or the demo gated LM trained here
first, as `make run` trains it, ~30 s) and the stories their prompts begin."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from lyceum_ml.causal_lm import CausalLM
from lyceum_ml.causal_lm_impl import load_causal_lm
from lyceum_ml.lm.demo import DEFAULT_CORPUS, build


def add_lm_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lm", type=Path, help="a Lyceum LM checkpoint (default: train the demo LM)")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="stories for the prompts")


def bench_lm(args: argparse.Namespace) -> CausalLM:
    with tempfile.TemporaryDirectory() as tmp:
        path = args.lm
        if path is None:
            path = Path(tmp) / "lm-demo"
            print("training the demo LM ...", file=sys.stderr, flush=True)
            build(path, args.corpus)
        return load_causal_lm(path)
