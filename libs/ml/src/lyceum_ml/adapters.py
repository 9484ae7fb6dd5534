"""LoRA adapters served over one base model with peft: read from the PEFT layout (`adapter_config.json` +
`adapter_model.safetensors`, so adapters trained elsewhere load too), injected under a name of their own, and
applied per token: rows with different adapters (and rows with none) share one forward pass through peft's
mixed-batch path (`adapter_names`), which selects each adapter's rows, not global state (`set_adapter`).

Reading (disk, parsing) is thread-safe and slow; injecting and removing change the model's modules, so they
run on the one thread that runs the model's forwards, between steps (a few milliseconds). A new version of
an adapter is injected under a new name and the old one removed once unused: never swapped under a running
request."""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import LoraConfig, PeftConfig, PeftModel, set_peft_model_state_dict
from peft.utils import load_peft_weights
from torch import Tensor, nn

CONFIG_FILE = "adapter_config.json"
BASE = "__base__"  # peft's name for "no adapter" in a mixed batch


@dataclass(frozen=True)
class AdapterWeights:
    config: LoraConfig
    state: dict[str, Tensor]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.state.values())


def read_adapter(
    path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> AdapterWeights:
    """A LoRA adapter directory -> its config and weights (on `device`, in `dtype`). ValueError if the
    directory holds no LoRA adapter."""
    path = Path(path)
    if not (path / CONFIG_FILE).exists():
        raise ValueError(f"{path} has no {CONFIG_FILE}: not an adapter in the PEFT layout")
    config = PeftConfig.from_pretrained(str(path))
    if not isinstance(config, LoraConfig):
        raise ValueError(f"{path}: only LoRA adapters are served, not {config.peft_type}")
    config.inference_mode = True
    state = load_peft_weights(str(path), device=str(device))
    return AdapterWeights(config, {k: v.to(dtype) for k, v in state.items()})


class AdapterHost:
    """The adapters injected into one base model. `add`/`remove`/`applied` run on the model's own thread."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self._peft: PeftModel | None = None
        self.names: set[str] = set()

    def add(self, name: str, weights: AdapterWeights) -> None:
        """Injects an adapter under `name` (a module-safe name, no dots). ValueError if it does not fit the
        model (other target modules or shapes); the model is left as it was."""
        if "." in name or not name or name == BASE:
            raise ValueError(f"adapter name {name!r} must be non-empty, without dots, not {BASE}")
        if name in self.names:
            raise ValueError(f"adapter {name!r} is loaded already")
        with warnings.catch_warnings():  # peft notes that a custom model has no `config`
            warnings.simplefilter("ignore")
            try:
                if self._peft is None:
                    self._peft = PeftModel(self.model, weights.config, adapter_name=name)
                else:
                    self._peft.add_adapter(name, weights.config)
                result = set_peft_model_state_dict(self._peft, weights.state, adapter_name=name)
            except Exception as exc:
                self._discard(name)
                raise ValueError(f"adapter does not fit the model: {exc}") from exc
        if result.unexpected_keys:
            self._discard(name)
            raise ValueError(f"adapter does not fit the model: unexpected {result.unexpected_keys[:3]}")
        self._peft.eval()
        self.names.add(name)

    def remove(self, name: str) -> None:
        if name in self.names:
            self.names.discard(name)
            self._discard(name)

    def _discard(self, name: str) -> None:
        if self._peft is not None and name in self._peft.peft_config:
            with warnings.catch_warnings():  # "adapter ... was active": rows name theirs, none is active
                warnings.simplefilter("ignore")
                self._peft.delete_adapter(name)

    @contextmanager
    def applied(self, adapters: Sequence[str | None]) -> Iterator[None]:
        """Within: a forward over tokens whose adapters are `adapters` (one per row of the first dimension,
        None = the base model) applies each its own. KeyError for an adapter not loaded."""
        missing = {a for a in adapters if a is not None and a not in self.names}
        if missing:
            raise KeyError(f"adapters not loaded: {sorted(missing)}")
        if self._peft is None:
            yield
            return
        names = [a if a is not None else BASE for a in adapters]
        with self._peft.base_model._enable_peft_forward_hooks(adapter_names=names):
            yield
