"""The demo LoRA adapter (`python -m lyceum_ml.lm.demo_adapter`): a PEFT-layout directory that PEFT loads back
onto the Lyceum LM, changes its logits, and is the same for the same seed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file

from lyceum_ml.lm.checkpoint import load_lm
from lyceum_ml.lm.demo_adapter import TARGET_MODULES, build_demo_adapter

PEFT_FILES = {"adapter_config.json", "adapter_model.safetensors"}


@pytest.fixture(scope="module")
def adapter_dir(tiny_lyceum_lm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_demo_adapter(tiny_lyceum_lm_dir, tmp_path_factory.mktemp("adapters") / "tutor", rank=4)


def test_writes_the_peft_layout(adapter_dir: Path, tiny_lyceum_lm_dir: Path) -> None:
    assert PEFT_FILES <= {p.name for p in adapter_dir.iterdir()}
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    assert (config["peft_type"], config["r"], config["lora_alpha"]) == ("LORA", 4, 8)
    assert sorted(config["target_modules"]) == sorted(TARGET_MODULES)
    weights = load_file(adapter_dir / "adapter_model.safetensors")
    n_layer = load_lm(tiny_lyceum_lm_dir).model.cfg.n_layer
    assert len(weights) == n_layer * len(TARGET_MODULES) * 2  # lora_A and lora_B of each target
    assert all(w.abs().sum() > 0 for w in weights.values())  # B too: not LoRA's no-op zero init


def test_peft_loads_it_and_the_logits_change(adapter_dir: Path, tiny_lyceum_lm_dir: Path) -> None:
    ids = torch.arange(1, 25).reshape(2, 12)  # (B, T)
    with torch.no_grad():
        base = load_lm(tiny_lyceum_lm_dir).model(ids)
        tuned = PeftModel.from_pretrained(load_lm(tiny_lyceum_lm_dir).model, adapter_dir).eval()(ids)
    assert tuned.shape == base.shape
    assert (tuned - base).abs().max() > 0.1 * base.abs().max()
    assert not torch.equal(tuned.argmax(-1), base.argmax(-1))


def test_same_seed_same_adapter_and_atomic_replace(tiny_lyceum_lm_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "tutor"

    def build(seed: int) -> dict[str, torch.Tensor]:
        build_demo_adapter(tiny_lyceum_lm_dir, out, rank=2, seed=seed)
        return load_file(out / "adapter_model.safetensors")

    rng_before = torch.random.get_rng_state()
    first = build(7)
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # the caller's generator is left alone

    (out / "stale.txt").write_text("from an earlier build")
    again = build(7)
    assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)
    assert not (out / "stale.txt").exists()  # replaced whole, not merged into
    assert [p.name for p in tmp_path.iterdir()] == ["tutor"]  # no temporary sibling left behind

    other = build(8)
    assert any(not torch.equal(first[k], other[k]) for k in first)
