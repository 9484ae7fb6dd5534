"""LoRA's rules, defined once for the gateway (empty adapters, validation) and the trainer (SFT, SDPO): the
defaults of its hyperparameters and the modules it targets by default on each architecture.

An architecture is what a registered language model's metadata names (`metadata.architecture`): `lyceum`
for Lyceum's gated TransformerLM, otherwise the Hugging Face `model_type` (`llama`, `qwen2`, `gpt2`, ...)."""

from __future__ import annotations

LYCEUM_ARCHITECTURE = "lyceum"

DEFAULT_R = 8
DEFAULT_ALPHA = 16
DEFAULT_DROPOUT = 0.05
MAX_R = 1024

# Attention's projections and the MLP of each architecture family.
_LLAMA_STYLE = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
DEFAULT_TARGET_MODULES: dict[str, tuple[str, ...]] = {
    LYCEUM_ARCHITECTURE: ("q_proj", "kv_proj", "o_proj", "up", "down"),
    "gpt2": ("c_attn", "c_proj"),
    **{
        arch: _LLAMA_STYLE
        for arch in ("llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "gemma", "gemma2", "phi3")
    },
}


def default_target_modules(architecture: str) -> tuple[str, ...] | None:
    """The modules LoRA adapts on `architecture` by default; None where Lyceum has no default (the caller
    must then name `target_modules`)."""
    return DEFAULT_TARGET_MODULES.get(architecture)
