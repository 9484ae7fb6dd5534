"""Supervised fine-tuning: template strings exact, the loss only on what the model should learn, truncation
and packing, and a resumed run equal to an uninterrupted one, on a tiny Lyceum LM and a tiny GPT-2."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lyceum_ml.sft.base import load_base
from lyceum_ml.sft.examples import IGNORE, EncodeStats, Example, collate, encode, pack, truncate_all
from lyceum_ml.sft.prepare import prepare
from lyceum_ml.sft.templates import Segment, render, resolve_template
from lyceum_ml.sft.trainer import LoRAOptions, SFTTrainConfig, SFTTrainer, token_loss_sum

ALPACA = {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"}
CHAT = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi?"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Bye?"},
        {"role": "assistant", "content": "Bye."},
    ]
}


def text(segments: list[Segment]) -> str:
    return "".join(s.text for s in segments)


def learned(segments: list[Segment]) -> list[str]:
    return [s.text for s in segments if s.learn]


# --- templates --------------------------------------------------------------------------------------
def test_alpaca_template_is_exact_with_and_without_input() -> None:
    segs = render(ALPACA, "alpaca", "alpaca", eos="</s>")
    assert text(segs) == ("### Instruction:\nAdd the numbers.\n\n### Input:\n2 and 3\n\n### Response:\n5</s>")
    assert learned(segs) == ["5</s>"]
    no_input = render({**ALPACA, "input": ""}, "alpaca", "alpaca")
    assert text(no_input) == "### Instruction:\nAdd the numbers.\n\n### Response:\n5"


def test_chatml_template_is_exact_and_learns_assistant_turns_only() -> None:
    segs = render(CHAT, "chat", "chatml")
    assert text(segs) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi?<|im_end|>\n"
        "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nBye?<|im_end|>\n"
        "<|im_start|>assistant\nBye.<|im_end|>"
    )
    assert learned(segs) == ["Hello.<|im_end|>", "Bye.<|im_end|>"]


def test_llama2_template_is_exact() -> None:
    segs = render(CHAT, "chat", "llama2", eos="</s>")
    assert text(segs) == (
        "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi? [/INST]\nHello.</s>\n[INST] Bye? [/INST]\nBye.</s>"
    )
    assert learned(segs) == ["Hello.</s>", "Bye.</s>"]
    single = render(ALPACA, "alpaca", "llama2")
    assert text(single) == "[INST] Add the numbers.\n\n2 and 3 [/INST]\n5"


def test_completion_rows_learn_the_completion_and_alpaca_refuses_multi_turn_chats() -> None:
    segs = render({"prompt": "Q: 2+2?\nA:", "completion": " 4"}, "completion", None, eos="<e>")
    assert [(s.text, s.learn) for s in segs] == [("Q: 2+2?\nA:", False), (" 4<e>", True)]
    with pytest.raises(ValueError, match="one user turn"):
        render(CHAT, "chat", "alpaca")


def test_auto_template_prefers_the_tokenizers_chat_template(tiny_hf_gpt2_dir: Path) -> None:
    assert resolve_template("auto", "chat", None) == "chatml"
    assert resolve_template("auto", "alpaca", None) == "alpaca"
    assert resolve_template("auto", "completion", None) is None

    class WithTemplate:
        chat_template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"

    assert resolve_template("auto", "chat", WithTemplate()) == "tokenizer"
    with pytest.raises(ValueError, match="no chat template"):
        resolve_template("tokenizer", "chat", None)


def test_tokenizer_template_learns_each_assistant_turn(tiny_hf_gpt2_dir: Path) -> None:
    base = load_base(tiny_hf_gpt2_dir)
    base.tokenizer.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    segs = render(CHAT, "chat", "tokenizer", tokenizer=base.tokenizer)
    assert learned(segs) == ["Hello.<|im_end|>\n", "Bye.<|im_end|>\n"]
    assert text(segs) == base.tokenizer.apply_chat_template(CHAT["messages"], tokenize=False)


# --- masks, truncation, packing -----------------------------------------------------------------------
def tokenize_chars(s: str) -> list[int]:
    return [ord(c) % 97 + 1 for c in s]


def test_labels_mask_everything_but_learned_segments() -> None:
    ex = encode([Segment("ab", False), Segment("cd", True), Segment("e", False)], tokenize_chars, bos=0)
    assert ex.input_ids == [0, *tokenize_chars("abcde")]
    assert ex.labels == [IGNORE, IGNORE, IGNORE, *tokenize_chars("cd"), IGNORE]


def test_truncation_drops_and_counts_examples_left_without_targets() -> None:
    long_prompt = encode([Segment("x" * 20, False), Segment("yy", True)], tokenize_chars)
    fits = encode([Segment("ab", False), Segment("cdef", True)], tokenize_chars)
    stats = EncodeStats()
    kept = truncate_all([long_prompt, fits], max_len=4, stats=stats)
    assert kept == [Example(fits.input_ids[:4], fits.labels[:4])]
    assert (stats.examples, stats.truncated, stats.dropped_no_target) == (1, 2, 1)
    assert stats.learned_tokens == 2


def test_packing_keeps_order_restarts_positions_and_never_targets_across_examples() -> None:
    a = encode([Segment("ab", False), Segment("c", True)], tokenize_chars)
    b = encode([Segment("d", False), Segment("ef", True)], tokenize_chars)
    c = encode([Segment("g", False), Segment("hijk", True)], tokenize_chars)
    rows = pack([a, b, c], max_len=6)
    assert [r.input_ids for r in rows] == [a.input_ids + b.input_ids, c.input_ids]
    assert rows[0].positions == [0, 1, 2, 0, 1, 2]
    assert rows[0].labels[3] == IGNORE  # b's first token is not predicted from a's last


@pytest.mark.parametrize("kind", ["lyceum", "hf"])
def test_packed_rows_give_each_example_the_loss_it_has_alone(
    kind: str, tiny_lyceum_lm_dir: Path, tiny_hf_gpt2_dir: Path
) -> None:
    base = load_base(tiny_lyceum_lm_dir if kind == "lyceum" else tiny_hf_gpt2_dir)
    rows = [
        {"prompt": "Once upon a time", "completion": " there was a cat."},
        {"prompt": "The dog", "completion": " ran home fast."},
    ]
    examples, _ = prepare(rows, "completion", "auto", base, max_len=64)
    packed = pack(examples, max_len=64)
    assert len(packed) == 1
    forward = base.forward(base.model.eval())

    def loss(rows_: list[Example]) -> torch.Tensor:
        batch = collate(rows_, base.pad_id)
        logits = forward(batch.input_ids, batch.positions)
        return torch.nn.functional.cross_entropy(
            logits[:, :-1].flatten(0, 1), batch.labels[:, 1:].flatten(), ignore_index=IGNORE, reduction="sum"
        )

    with torch.no_grad():
        separate = loss([examples[0]]) + loss([examples[1]])
        together = loss(packed)
        padded = loss(examples)  # the two in one right-padded batch
    torch.testing.assert_close(together, separate, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(padded, separate, rtol=1e-4, atol=1e-4)


# --- the trainer ------------------------------------------------------------------------------------
def chat_rows(n: int) -> list[dict]:
    return [
        {
            "messages": [
                {"role": "user", "content": f"What is {i} plus {i}?"},
                {"role": "assistant", "content": f"Great question! {i} plus {i} is {2 * i}."},
            ]
        }
        for i in range(n)
    ]


def make_trainer(base_dir: Path, cfg: SFTTrainConfig, rows: list[dict] | None = None) -> SFTTrainer:
    base = load_base(base_dir)
    arch_modules = ("q_proj", "kv_proj", "o_proj", "up", "down") if base.kind == "lyceum" else ("c_attn",)
    examples, _ = prepare(rows or chat_rows(24), "chat", "chatml", base, max_len=64)
    return SFTTrainer(base, examples, examples[:4], cfg, LoRAOptions(r=4, target_modules=arch_modules))


def test_loss_ignores_what_the_model_predicts_for_prompt_tokens(tiny_lyceum_lm_dir: Path) -> None:
    """Changing only the predictions whose targets are prompt tokens leaves the loss unchanged; changing a
    prediction of a response token does not."""
    trainer = make_trainer(tiny_lyceum_lm_dir, SFTTrainConfig(batch_size=4))
    batch = trainer._batch(0)
    with torch.no_grad():
        logits = trainer._eval_logits(batch.input_ids, batch.positions)
    loss = token_loss_sum(logits, batch.labels)
    # position t predicts token t + 1: its target is a prompt (or padding) token where label t + 1 is IGNORE
    prompt_targets = torch.zeros_like(batch.labels, dtype=torch.bool)
    prompt_targets[:, :-1] = batch.labels[:, 1:] == IGNORE
    assert prompt_targets.any() and (~prompt_targets[:, :-1]).any()
    noise = torch.randn(logits.shape, generator=torch.Generator().manual_seed(0)) * 10
    changed = torch.where(prompt_targets[..., None], logits + noise, logits)
    assert torch.equal(token_loss_sum(changed, batch.labels), loss)
    response = ~prompt_targets
    response[:, -1] = False
    changed = torch.where(response[..., None], logits + noise, logits)
    assert not torch.allclose(token_loss_sum(changed, batch.labels), loss)


def test_lora_trains_only_the_adapter_and_learns(tiny_lyceum_lm_dir: Path) -> None:
    trainer = make_trainer(tiny_lyceum_lm_dir, SFTTrainConfig(max_steps=30, lr=1e-2, batch_size=8))
    frozen = {k: v.clone() for k, v in trainer.model.named_parameters() if "lora_" not in k}
    assert all("lora_" in k for k in trainer.trainable_state())
    first = trainer.evaluate()["val_loss"]
    trainer.run(30)
    assert trainer.evaluate()["val_loss"] < first - 0.5
    for k, v in trainer.model.named_parameters():
        if k in frozen:
            assert torch.equal(v, frozen[k]), k


@pytest.mark.parametrize("kind", ["lyceum", "hf"])
def test_resumed_training_equals_uninterrupted(
    kind: str, tiny_lyceum_lm_dir: Path, tiny_hf_gpt2_dir: Path, tmp_path: Path
) -> None:
    base_dir = tiny_lyceum_lm_dir if kind == "lyceum" else tiny_hf_gpt2_dir
    cfg = SFTTrainConfig(max_steps=6, batch_size=3, grad_accum=2, lr=5e-3, seed=3)
    whole = make_trainer(base_dir, cfg)
    whole.run(6)

    first = make_trainer(base_dir, cfg)
    first.run(2)
    first.save(tmp_path / "ckpt")
    torch.manual_seed(12345)  # a new process: unrelated global RNG state
    resumed = make_trainer(base_dir, cfg)
    resumed.load(tmp_path / "ckpt")
    resumed.run(4)
    for (name, a), b in zip(whole.trainable_state().items(), resumed.trainable_state().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_epochs_decide_steps_and_every_example_is_seen_once_per_epoch(tiny_lyceum_lm_dir: Path) -> None:
    trainer = make_trainer(tiny_lyceum_lm_dir, SFTTrainConfig(epochs=2, batch_size=4, grad_accum=3))
    assert trainer.total_steps == 4  # 2 epochs x 24 examples / 12 per step
    seen = [i for b in range(12) for i in trainer.order.batch(b)]
    assert sorted(seen[:24]) == list(range(24))
    assert sorted(seen[24:]) == list(range(24))
    assert seen[:24] != seen[24:]


@pytest.mark.parametrize("method", ["qlora", "full"])
def test_qlora_and_full_fine_tunes_learn(method: str, tiny_llama_dir: Path, tmp_path: Path) -> None:
    base = load_base(tiny_llama_dir, quantize_4bit=method == "qlora")
    if method == "qlora":
        assert type(base.model.model.layers[0].self_attn.q_proj).__name__ == "Linear4bit"
    rows = [{"prompt": f"{i}+{i}=", "completion": f"{2 * i}"} for i in range(24)]
    examples, _ = prepare(rows, "completion", "auto", base, max_len=32)
    cfg = SFTTrainConfig(method=method, max_steps=12, batch_size=8, lr=1e-2 if method == "qlora" else 3e-3)
    trainer = SFTTrainer(
        base, examples, examples[:8], cfg, LoRAOptions(r=4, target_modules=("q_proj", "v_proj"))
    )
    first = trainer.evaluate()["val_loss"]
    trainer.run(12)
    assert trainer.evaluate()["val_loss"] < first - 0.3
    if method == "full":
        assert not any("lora_" in k for k in trainer.trainable_state())
        saved = trainer.save_model(tmp_path / "model", {"note": "x"})
        assert (
            saved["architecture"] == "llama" and "model.layers.0.self_attn.q_proj" in saved["linear_modules"]
        )
        reloaded = load_base(tmp_path / "model")
        batch = collate(examples[:2], base.pad_id)
        with torch.no_grad():
            torch.testing.assert_close(
                reloaded.forward(reloaded.model)(batch.input_ids, None),
                base.forward(base.model)(batch.input_ids, None),
            )
    else:
        with pytest.raises(ValueError, match="not merged"):
            trainer.save_model(tmp_path / "merged", {})
