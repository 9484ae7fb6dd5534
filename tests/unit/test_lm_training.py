"""LMTrainer: the loss falls on a small TinyStories corpus with a trained 512-token BPE, resume after
save/load is bit-exact, export -> load_lm predicts identically, and the precision flag is safe on CPU."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures.data import require_shared
from tokenizers import Tokenizer

from lyceum_ml.distributed import autocast_dtype
from lyceum_ml.lm import DynamicGate, LMConfig, TransformerLM
from lyceum_ml.lm.checkpoint import load_lm, save_lm
from lyceum_ml.lm.data import split_documents, tokenize_documents, train_val_split
from lyceum_ml.lm.train import LMTrainConfig, LMTrainer
from lyceum_ml.tokenization import train_bpe
from lyceum_ml.training import ResumableTrainer

MODEL = LMConfig(vocab_size=512, d_model=64, n_layer=2, n_head=4, n_kv_head=2, max_seq_len=64, gate_hidden=8)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/fixtures/lm_models.py


@pytest.fixture(scope="module")
def corpus() -> tuple[Tokenizer, np.ndarray, np.ndarray]:
    """The first ~20 KB of TinyStories: a 512-token BPE, then train/val token streams split by document."""
    docs = split_documents(require_shared("tinystories", "tinystories_val_head.txt").read_text()[:20_000])
    tokenizer = train_bpe(docs, 512)
    train, val = train_val_split(docs, 0.1, seed=0)
    return tokenizer, tokenize_documents(train, tokenizer), tokenize_documents(val, tokenizer)


def trainer(corpus: tuple[Tokenizer, np.ndarray, np.ndarray], cfg: LMTrainConfig, seed: int = 0) -> LMTrainer:
    torch.manual_seed(seed)
    tokenizer, train, val = corpus
    return LMTrainer(TransformerLM(MODEL), tokenizer, train, val, cfg, device="cpu")


def test_loss_decreases_on_tinystories(corpus: tuple[Tokenizer, np.ndarray, np.ndarray]) -> None:
    cfg = LMTrainConfig(
        steps=60, batch_size=8, seq_len=64, lr=3e-3, warmup_steps=5, eval_every=30, eval_batches=2
    )
    t = trainer(corpus, cfg)
    protocol: ResumableTrainer = t  # a static Protocol: type checkers verify the conformance
    assert protocol.total_steps == 60 and protocol.step == 0
    before = t.evaluate()
    assert abs(before["val_loss"] - np.log(512)) < 0.3  # a fresh model is near uniform
    first = t.run(5)
    result = t.run(1000)  # capped at total_steps
    assert t.step == result["step"] == 60 and t.run(1)["throughput"] == 0.0
    assert result["loss"] < first["loss"] - 0.5
    assert result["val_loss"] < before["val_loss"] - 1.5  # measured ~6.26 -> ~4.45
    assert result["perplexity"] == pytest.approx(np.exp(result["val_loss"]))
    assert result["throughput"] > 0 and result["grad_norm"] > 0
    assert result["lr"] == pytest.approx(3e-3 * 0.1, rel=0.05)  # cosine reached its floor
    # the plain LM is trained: gates stay frozen at identity and the run never touched torch.distributed
    gates = [p for m in t.raw_model.modules() if isinstance(m, DynamicGate) for p in m.out.parameters()]
    assert gates and all(not p.requires_grad and not p.any() for p in gates)
    assert t.ddp is None and not (torch.distributed.is_available() and torch.distributed.is_initialized())


def test_resume_is_exact(corpus: tuple[Tokenizer, np.ndarray, np.ndarray], tmp_path: Path) -> None:
    cfg = LMTrainConfig(steps=6, batch_size=4, seq_len=32, grad_accum=2, lr=3e-3, warmup_steps=2, seed=11)
    straight = trainer(corpus, cfg)
    losses = [straight.run(1)["loss"] for _ in range(6)]

    first = trainer(corpus, cfg)
    resumed = [first.run(1)["loss"] for _ in range(3)]
    first.save(tmp_path / "state")
    second = trainer(corpus, cfg, seed=123)  # different initial weights: everything must come from load
    second.load(tmp_path / "state")
    assert second.step == 3
    resumed += [second.run(1)["loss"] for _ in range(3)]

    assert resumed == losses
    for (name, a), b in zip(
        straight.raw_model.state_dict().items(), second.raw_model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    assert straight.sampler.draws == second.sampler.draws == 12
    assert straight.evaluate() == second.evaluate()


def test_export_round_trip(corpus: tuple[Tokenizer, np.ndarray, np.ndarray], tmp_path: Path) -> None:
    tokenizer = corpus[0]
    t = trainer(corpus, LMTrainConfig(steps=3, batch_size=4, seq_len=32, warmup_steps=1))
    t.run(3)
    t.evaluate()
    metadata = t.export(tmp_path / "lm")
    assert metadata["step"] == 3 and metadata["tokens_seen"] == 3 * 4 * 32 and "val_loss" in metadata
    assert sorted(p.name for p in (tmp_path / "lm").iterdir()) == [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
    ]
    assert json.loads((tmp_path / "lm" / "config.json").read_text())["kind"] == "lm"

    loaded = load_lm(tmp_path / "lm")
    assert loaded.metadata == json.loads(json.dumps(metadata)) and not loaded.model.training
    assert loaded.tokenizer.to_str() == tokenizer.to_str()
    idx = torch.tensor([tokenizer.encode("Once upon a time, a little cat").ids])
    t.raw_model.eval()
    with torch.no_grad():
        assert torch.equal(loaded.model(idx), t.raw_model(idx))
        assert torch.equal(loaded.model(idx, gate=0.3), t.raw_model(idx, gate=0.3))

    save_lm(tmp_path / "lm", loaded.model, tmp_path / "lm", {"again": True})  # tokenizer from a directory
    assert load_lm(tmp_path / "lm").metadata == {"again": True}
    with pytest.raises(ValueError, match="tokens"):
        save_lm(
            tmp_path / "small",
            TransformerLM(LMConfig(vocab_size=100, d_model=16, n_head=2, n_kv_head=2)),
            tokenizer,
        )


def test_precision_flag_on_cpu_is_plain_fp32(corpus: tuple[Tokenizer, np.ndarray, np.ndarray]) -> None:
    assert autocast_dtype("bf16", torch.device("cpu")) is None
    assert autocast_dtype("auto", torch.device("cpu")) is None
    assert autocast_dtype("bf16", torch.device("cuda")) is torch.bfloat16
    assert autocast_dtype("fp32", torch.device("cuda")) is None
    runs = {}
    for precision in ("fp32", "bf16", "auto"):
        t = trainer(corpus, LMTrainConfig(steps=2, batch_size=4, seq_len=32, precision=precision))
        assert t.amp_dtype is None
        runs[precision] = (t.run(2)["loss"], t.raw_model.state_dict())
    for precision in ("bf16", "auto"):
        assert runs[precision][0] == runs["fp32"][0]
        assert all(torch.equal(a, runs["fp32"][1][k]) for k, a in runs[precision][1].items())
    with pytest.raises(ValueError, match="precision"):
        LMTrainConfig(precision="fp16")  # type: ignore[arg-type]
