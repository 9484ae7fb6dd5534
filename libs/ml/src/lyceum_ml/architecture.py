"""What the registry records of a language model's structure, so that services without torch (the gateway)
can check and build LoRA adapters for it: its architecture (`lyceum` or the Hugging Face `model_type`) and
the shapes of its linear layers. Every registration of a language model (kind `lm`) carries `describe()`."""

from __future__ import annotations

from typing import Any

from torch import nn

from lyceum_core.lora import LYCEUM_ARCHITECTURE


def architecture(model: nn.Module) -> str:
    """`lyceum` for Lyceum's TransformerLM, else the transformers config's `model_type`."""
    from lyceum_ml.lm.model import TransformerLM

    if isinstance(model, TransformerLM):
        return LYCEUM_ARCHITECTURE
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if not isinstance(model_type, str) or not model_type:
        raise ValueError(f"{type(model).__name__} is neither a Lyceum LM nor a transformers model")
    return model_type


def linear_modules(model: nn.Module) -> dict[str, list[int]]:
    """Every LoRA-able linear layer by its qualified name -> [in_features, out_features] (GPT-2's Conv1D
    stores its weight transposed: its shape is read as nn.Linear's would be)."""
    shapes: dict[str, list[int]] = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            shapes[name] = [module.in_features, module.out_features]
        elif type(module).__name__ == "Conv1D" and hasattr(module, "nf"):  # transformers.pytorch_utils
            n_in, n_out = module.weight.shape
            shapes[name] = [int(n_in), int(n_out)]
    return shapes


def describe(model: nn.Module) -> dict[str, Any]:
    """The registry metadata of a language model's structure: architecture and linear_modules."""
    return {"architecture": architecture(model), "linear_modules": linear_modules(model)}
