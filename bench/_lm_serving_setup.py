"""What bench/lm_serving.py builds before it serves: a GPT-2-small-shaped Lyceum LM with seeded random weights
and GPT-2's tokenizer (from the shared data), LoRA adapters of it in the PEFT layout (made with peft, as
tests/integration/test_sampler_engine_serving.py makes them), and a migrated SQLite registry + artifact store
where adapters are registered (kind `adapter`, metadata `base`) the way the trainer would."""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model

from lyceum_core.identity import DEFAULT_TENANT
from lyceum_core.storage import ArtifactStore
from lyceum_db.engine import create_engine
from lyceum_db.migrate import upgrade
from lyceum_db.repositories.registry import ModelRepository
from lyceum_ml.lm import LMConfig, TransformerLM
from lyceum_ml.lm.checkpoint import load_lm, save_lm

# The shared data, found as tests/fixtures/data.py finds it: $LYCEUM_SHARED_DATA, else shared/data beside the
# repository root.
SHARED_DATA_ENV = "LYCEUM_SHARED_DATA"
REPO = Path(__file__).resolve().parents[1]
GPT2S = LMConfig(vocab_size=50304, d_model=768, n_layer=12, n_head=12, n_kv_head=12, max_seq_len=1024)
LORA_TARGETS = ["q_proj", "kv_proj", "o_proj", "up", "down"]
LORA_RANK = 8
LORA_B_STD = 0.05  # a visible change of the outputs, far from overflow (speed does not depend on it)
TENANT = DEFAULT_TENANT


def shared_data() -> Path:
    return Path(os.environ.get(SHARED_DATA_ENV) or REPO.parent / "shared" / "data")


def gpt2_tokenizer() -> Path:
    """GPT-2's tokenizer (vocab.json + merges.txt) in the shared data; SystemExit naming where it belongs."""
    path = shared_data() / "gpt2_tokenizer"
    if not path.exists():
        raise SystemExit(
            f"shared data missing: {path}. Put the shared data folder at {shared_data()} (`shared/data` "
            f"beside the repository root), or point {SHARED_DATA_ENV} at it."
        )
    return path


def write_model(path: Path, seed: int = 0) -> Path:
    """The GPT-2-small-shaped Lyceum LM (124M parameters + gates), seeded random weights, as a checkpoint."""
    torch.manual_seed(seed)
    return save_lm(path, TransformerLM(GPT2S).eval(), gpt2_tokenizer(), {"name": "gpt2s-random"})


def write_adapters(base_dir: Path, out: Path, seeds: Sequence[int]) -> list[Path]:
    """One LoRA adapter per seed (r=8 on every projection, random A and B), saved by peft in its layout. The
    base model is loaded and wrapped once; each adapter redraws the LoRA weights and saves them."""
    peft_model = get_peft_model(
        load_lm(base_dir).model,
        LoraConfig(r=LORA_RANK, lora_alpha=2 * LORA_RANK, target_modules=LORA_TARGETS),
    )
    dirs = []
    for seed in seeds:
        g = torch.Generator().manual_seed(seed)
        for name, p in peft_model.named_parameters():
            if "lora_A" in name:
                p.data.uniform_(-1 / p.shape[1] ** 0.5, 1 / p.shape[1] ** 0.5, generator=g)
            elif "lora_B" in name:
                p.data.normal_(0, LORA_B_STD, generator=g)
        peft_model.save_pretrained(out / f"adapter-{seed}")
        dirs.append(out / f"adapter-{seed}")
    return dirs


class Registry:
    """A migrated SQLite database and a local artifact store; `register` publishes an adapter version."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.database_url = f"sqlite:///{root / 'lyceum.db'}"
        self.registry_url = str(root / "registry")
        upgrade(self.database_url)
        self._engine = create_engine(self.database_url)
        self.models = ModelRepository(self._engine)
        self.store = ArtifactStore(self.registry_url)

    def register(self, adapter_dir: Path, name: str, base: str) -> int:
        """Stores the adapter's files and registers them as the next version of `name`; the version."""
        uri = self.store.put_dir(adapter_dir, f"adapters/{TENANT}/{name}/{uuid.uuid4().hex}")
        return self.models.register(TENANT, name, "adapter", uri, {}, metadata={"base": base}).version

    def close(self) -> None:
        self._engine.dispose()
