"""`lyceum jobs show` on a `gating_ppo` job: the ablation table (arms x mean ± std of reward, diversity and
perplexity term) and the learned-vs-fixed line, rendered by the client package without torch."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from rich.console import Console

from lyceum_client.cli import show_ablation


def arm(reward: float, div: float, ppl: float | None) -> dict[str, Any]:
    return {
        "reward": {"mean": reward, "std": 0.01},
        "diversity": {"mean": div, "std": 0.02},
        "ppl": {"mean": ppl, "std": None if ppl is None else 0.03},
        "per_seed": [{"seed": 0, "reward": reward}],
    }


ABLATION = {
    "episodes": 4,
    "seeds": [0, 1],
    "episode_length": 8,
    "fixed_modulation": 0.5,
    "arms": {
        "random": arm(0.18, 0.5, -0.4),
        "fixed": arm(0.2, 0.55, -0.35),
        "neutral": arm(0.19, 0.52, None),
        "learned": arm(0.21, 0.6, -0.33),
    },
    "learned_vs_fixed": 0.05,
}


def render(job: dict[str, Any]) -> str:
    console = Console(width=200, record=True, no_color=True)
    with console.capture() as captured:
        show_ablation(console, job)
    return captured.get()


def test_the_ablation_table_shows_every_arm_and_the_comparison() -> None:
    text = render({"result": {"ablation": ABLATION, "gate_signal": False}})
    lines = text.splitlines()
    assert lines[0].split() == ["ARM", "REWARD", "DIVERSITY", "PPL", "TERM"]
    assert [line.split()[0] for line in lines[1:5]] == ["random", "fixed", "neutral", "learned"]
    assert "fixed (m=0.5)" in text and "0.2100 ± 0.0100" in text and "0.6000 ± 0.0200" in text
    neutral = next(line for line in lines if line.split()[:1] == ["neutral"])
    assert neutral.split()[-1] == "-"  # a missing figure
    assert "learned vs fixed: +5.0 % mean reward; 4 episodes x seeds [0, 1], 8 tokens each" in text
    assert "gate signal off (sampling only)" in text


def test_jobs_without_an_ablation_show_nothing_more() -> None:
    assert render({"result": {"model": {"name": "lm", "version": 1}}}) == ""
    assert render({"result": None}) == ""
    nan_result = {"ablation": ABLATION | {"learned_vs_fixed": None}, "gate_signal": True}
    text = render({"result": nan_result})
    assert "learned vs fixed: - mean reward" in text and "gate signal" not in text


def test_the_client_renders_without_torch() -> None:
    code = "import sys, lyceum_client.cli, lyceum_client.render; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
