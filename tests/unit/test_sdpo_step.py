"""The teacher's hindsight prompt (exact text, rendered and tokenized as the sampler does) and the SDPO step
on a tiny Llama: only the LoRA trains, the loss falls over steps on one example, the base's weights never
move, and the optimizer's state travels with the adapter."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from lyceum_ml.chat import Message, chatml
from lyceum_ml.sdpo.step import OPTIMIZER_FILE, Example, SDPOStepper, SDPOTrainSettings
from lyceum_ml.sdpo.teacher import HINDSIGHT, teacher_messages, teacher_prompt_ids
from lyceum_ml.sft.base import BaseLM, load_base

FEEDBACK = "Your name is Kuro."
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who are you?"}]


def new_adapter(base_dir: Path, out: Path, targets: tuple[str, ...] = ("q_proj", "v_proj")) -> Path:
    """A fresh LoRA (B = 0, so it starts equal to the base) saved in the PEFT layout."""
    from peft import LoraConfig, get_peft_model

    base = load_base(base_dir)
    torch.manual_seed(1)
    peft = get_peft_model(base.model, LoraConfig(r=4, lora_alpha=8, target_modules=list(targets)))
    peft.save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def adapter_dir(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return new_adapter(tiny_llama_dir, tmp_path_factory.mktemp("adapter") / "a")


@pytest.fixture(scope="module")
def base(tiny_llama_dir: Path) -> BaseLM:
    return load_base(tiny_llama_dir)


def example(base: BaseLM, rollout: list[float] | None = None) -> Example:
    prompt = base.tokenize(chatml([Message(**m) for m in MESSAGES]))
    response = base.tokenize("I am a helpful assistant.")
    return Example(prompt, teacher_prompt_ids(base, MESSAGES, prompt, FEEDBACK), response, rollout)


CFG = SDPOTrainSettings(lr=1e-2, teacher_top_k=20)


# --- the teacher's prompt ---------------------------------------------------------------------------
def test_hindsight_text_is_claas_exactly() -> None:
    assert HINDSIGHT == (
        "\n\n=== HINDSIGHT CONTEXT ===\n[The following is a future user message. Use this to guide your "
        "answer to the user prompt.]\n"
    )


def test_chat_teacher_prompt_is_the_student_prompt_with_hindsight_in_the_last_user_turn(base: BaseLM) -> None:
    ids = teacher_prompt_ids(base, MESSAGES, [1, 2], FEEDBACK)
    expected = chatml(
        [Message("system", "Be brief."), Message("user", "Who are you?" + HINDSIGHT + FEEDBACK)]
    )
    assert expected.endswith("<|im_start|>assistant\n")  # the generation prompt
    assert ids == base.tokenize(expected)  # as the sampler tokenizes: nothing added around the text
    turns = [
        Message("system", "S"),
        Message("user", "first"),
        Message("assistant", "ok"),
        Message("user", "second"),
    ]
    taught = teacher_messages(turns, FEEDBACK)
    assert taught[:3] == turns[:3] and taught[3] == Message("user", "second" + HINDSIGHT + FEEDBACK)
    assert teacher_messages([Message("system", "S")], FEEDBACK)[-1] == Message("user", HINDSIGHT + FEEDBACK)


def test_the_tokenizers_own_chat_template_is_used_when_it_has_one(tiny_llama_dir: Path) -> None:
    templated = load_base(tiny_llama_dir)
    templated.tokenizer.chat_template = (
        "{% for m in messages %}[{{ m.role }}]{{ m.content }}\n{% endfor %}"
        "{% if add_generation_prompt %}[assistant]{% endif %}"
    )
    ids = teacher_prompt_ids(templated, MESSAGES, [1], FEEDBACK)
    text = f"[system]Be brief.\n[user]Who are you?{HINDSIGHT}{FEEDBACK}\n[assistant]"
    assert ids == templated.tokenize(text)


def test_completion_teacher_prompt_keeps_the_prompt_ids_verbatim(base: BaseLM) -> None:
    prompt = base.tokenize("Once upon a time")
    ids = teacher_prompt_ids(base, None, prompt, FEEDBACK)
    assert ids[: len(prompt)] == prompt
    assert ids[len(prompt) :] == base.tokenize(HINDSIGHT + FEEDBACK + "\n")
    with pytest.raises(ValueError, match="feedback"):
        teacher_prompt_ids(base, None, prompt, "  ")


# --- the step ---------------------------------------------------------------------------------------
def test_only_lora_trains_and_the_loss_falls_while_the_base_stays(
    tiny_llama_dir: Path, adapter_dir: Path
) -> None:
    base = load_base(tiny_llama_dir)
    stepper = SDPOStepper(base, adapter_dir, CFG)
    frozen = {n: p.detach().clone() for n, p in stepper.module.named_parameters() if "lora_" not in n}
    assert all("lora_" in n for n, p in stepper.module.named_parameters() if p.requires_grad)
    ex = example(base)
    losses = [stepper.step([ex])["distill_loss"] for _ in range(6)]
    assert losses[-1] < 0.5 * losses[0], losses
    for name, p in stepper.module.named_parameters():
        if "lora_" not in name:
            torch.testing.assert_close(p, frozen[name], rtol=0, atol=0)
    # the teacher and the base are still the untouched base model
    fresh = load_base(tiny_llama_dir)
    ids = torch.tensor([[*ex.teacher_ids, *ex.response_ids]])
    with torch.no_grad(), stepper.module.disable_adapter():
        torch.testing.assert_close(base.model(input_ids=ids).logits, fresh.model(input_ids=ids).logits)


def test_step_figures(base: BaseLM, tiny_llama_dir: Path, adapter_dir: Path) -> None:
    stepper = SDPOStepper(load_base(tiny_llama_dir), adapter_dir, SDPOTrainSettings(teacher_top_k=20))
    ex = example(base)
    # the recorded rollout = the adapter's own log-probs (a fresh adapter is the base): on-policy
    with torch.no_grad():
        logits = base.model(input_ids=torch.tensor([[*ex.prompt_ids, *ex.response_ids]])).logits[0]
    n = len(ex.response_ids)
    rollout = torch.log_softmax(logits[-n - 1 : -1], -1).gather(-1, torch.tensor(ex.response_ids)[:, None])
    figures = stepper.step([example(base, rollout.squeeze(-1).tolist()), example(base)])
    assert set(figures) == {
        "distill_loss",
        "kl_reg",
        "is_ratio_mean",
        "clip_fraction",
        "grad_norm",
        "tokens",
        "loss",
    }
    assert figures["tokens"] == 2 * n and figures["grad_norm"] > 0 and figures["distill_loss"] > 0
    assert figures["is_ratio_mean"] == pytest.approx(1.0, abs=1e-4) and figures["clip_fraction"] == 0.0
    assert figures["kl_reg"] == pytest.approx(0.0, abs=1e-6)  # B = 0: the student is the base
    with pytest.raises(ValueError, match="rollout"):
        stepper.step([Example([1], [1], [2, 3], [0.0])])


def test_optimizer_state_travels_with_the_adapter(
    tiny_llama_dir: Path, adapter_dir: Path, tmp_path: Path
) -> None:
    first = SDPOStepper(load_base(tiny_llama_dir), adapter_dir, CFG)
    assert first.steps_done == 0 and not first.load_optimizer(adapter_dir)  # no file: fresh state
    ex = example(first.base)
    first.step([ex])
    first.step([ex])
    first.save_adapter(tmp_path / "v2")
    assert (tmp_path / "v2" / OPTIMIZER_FILE).exists() and (tmp_path / "v2" / "adapter_config.json").exists()

    second = SDPOStepper(load_base(tiny_llama_dir), tmp_path / "v2", CFG)
    assert second.steps_done == 2
    a, b = first.opt.state_dict()["state"], second.opt.state_dict()["state"]
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key]["exp_avg_sq"], b[key]["exp_avg_sq"])
    # the next step of both is the same step
    first.step([ex])
    second.step([ex])
    for (name, p), (_, q) in zip(first.named, second.named, strict=True):
        torch.testing.assert_close(p, q, msg=name)

    # this job's hyperparameters win over the saved ones
    third = SDPOStepper(
        load_base(tiny_llama_dir), tmp_path / "v2", SDPOTrainSettings(lr=1e-4, weight_decay=0.0)
    )
    assert third.opt.param_groups[0]["lr"] == 1e-4 and third.opt.param_groups[0]["weight_decay"] == 0.0

    # state saved for other weights is refused
    other = new_adapter(tiny_llama_dir, tmp_path / "other", targets=("k_proj",))
    shutil.copy(tmp_path / "v2" / OPTIMIZER_FILE, other / OPTIMIZER_FILE)
    with pytest.raises(ValueError, match="other weights"):
        SDPOStepper(load_base(tiny_llama_dir), other, CFG)


def test_the_step_runs_on_a_lyceum_lm(tiny_lyceum_lm_dir: Path, tmp_path: Path) -> None:
    adapter = new_adapter(tiny_lyceum_lm_dir, tmp_path / "lyc", targets=("q_proj", "o_proj"))
    base = load_base(tiny_lyceum_lm_dir)
    stepper = SDPOStepper(base, adapter, CFG)
    # its context is short (96 tokens), the hindsight text long: a made-up teacher prompt will do
    ex = Example(base.tokenize("Who are you?"), base.tokenize("Who are you? Kuro."), base.tokenize(" I am."))
    losses = [stepper.step([ex])["distill_loss"] for _ in range(4)]
    assert losses[-1] < losses[0], losses
