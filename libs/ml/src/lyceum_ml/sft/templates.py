"""Rows of a fine-tuning dataset -> text segments, each marked as learned (the response, the assistant turns)
or only read (the prompt, the system and user turns). The three templates render exactly as the LLM
Playground's do; `tokenizer` uses the model's own chat template.

    alpaca  ### Instruction:\\n{instruction}\\n\\n[### Input:\\n{input}\\n\\n]### Response:\\n{output}
    chatml  <|im_start|>{role}\\n{content}<|im_end|>   (turns joined by newlines)
    llama2  [INST] {user} [/INST]\\n{assistant}        (turns joined by newlines)

Rows are already validated (lyceum_jobs.datasets): alpaca {instruction, input?, output}, chat {messages},
completion {prompt, completion}. A row a template cannot render (a multi-turn chat under alpaca) is a
ValueError naming why."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

Template = Literal["alpaca", "chatml", "llama2", "tokenizer"]
TEMPLATES: tuple[Template, ...] = ("alpaca", "chatml", "llama2", "tokenizer")
IM_START, IM_END = "<|im_start|>", "<|im_end|>"


@dataclass(frozen=True, slots=True)
class Segment:
    text: str
    learn: bool  # the loss covers this segment's tokens


def resolve_template(requested: str, data_format: str, tokenizer: Any | None) -> Template | None:
    """The template a job uses: `auto` is the tokenizer's chat template when it has one, else alpaca for
    alpaca rows and chatml for chat rows; completion rows use none (None)."""
    if data_format == "completion":
        return None
    if requested != "auto":
        if requested == "tokenizer" and not has_chat_template(tokenizer):
            raise ValueError("data.template 'tokenizer': the base model's tokenizer has no chat template")
        return requested  # type: ignore[return-value]
    if has_chat_template(tokenizer):
        return "tokenizer"
    return "alpaca" if data_format == "alpaca" else "chatml"


def has_chat_template(tokenizer: Any | None) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render(
    row: dict[str, Any], data_format: str, template: Template | None, eos: str = "", tokenizer: Any = None
) -> list[Segment]:
    """One row -> its segments. `eos` (the tokenizer's end-of-sequence text) closes each learned response
    of the alpaca and llama2 templates and of completion rows, so the model learns to stop; ChatML's
    <|im_end|> and a chat template's own turn end are learned as part of the assistant turn."""
    if data_format == "completion":
        return [Segment(row["prompt"], False), Segment(row["completion"] + eos, True)]
    if template == "alpaca":
        return _alpaca(*_alpaca_fields(row, data_format), eos)
    messages = _messages(row, data_format)
    if template == "chatml":
        return _chatml(messages)
    if template == "llama2":
        return _llama2(messages, eos)
    if template == "tokenizer":
        return _chat_template(messages, tokenizer)
    raise ValueError(f"unknown template {template!r}")


def _alpaca_fields(row: dict[str, Any], data_format: str) -> tuple[str, str, str]:
    if data_format == "alpaca":
        return row["instruction"], row.get("input") or "", row["output"]
    messages = row["messages"]
    system = [m["content"] for m in messages if m["role"] == "system"]
    turns = [m for m in messages if m["role"] != "system"]
    if [m["role"] for m in turns] != ["user", "assistant"]:
        raise ValueError("the alpaca template renders one user turn and one assistant turn")
    return "\n\n".join([*system, turns[0]["content"]]), "", turns[1]["content"]


def _alpaca(instruction: str, input_: str, output: str, eos: str) -> list[Segment]:
    lines = ["### Instruction:", instruction, ""]
    if input_:
        lines += ["### Input:", input_, ""]
    lines += ["### Response:", ""]
    return [Segment("\n".join(lines), False), Segment(output + eos, True)]


def _messages(row: dict[str, Any], data_format: str) -> list[dict[str, str]]:
    if data_format == "chat":
        return [{"role": m["role"], "content": m["content"]} for m in row["messages"]]
    user = row["instruction"] + (f"\n\n{row['input']}" if row.get("input") else "")
    return [{"role": "user", "content": user}, {"role": "assistant", "content": row["output"]}]


def _chatml(messages: Sequence[dict[str, str]]) -> list[Segment]:
    segments: list[Segment] = []
    for i, m in enumerate(messages):
        sep = "\n" if i else ""
        if m["role"] == "assistant":
            segments += [Segment(f"{sep}{IM_START}assistant\n", False), Segment(m["content"] + IM_END, True)]
        else:
            segments.append(Segment(f"{sep}{IM_START}{m['role']}\n{m['content']}{IM_END}", False))
    return _merged(segments)


def _llama2(messages: Sequence[dict[str, str]], eos: str) -> list[Segment]:
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    segments: list[Segment] = []
    pending: str | None = None
    for m in (m for m in messages if m["role"] != "system"):
        if m["role"] == "user":
            if pending is not None:
                raise ValueError("the llama2 template needs user and assistant turns to alternate")
            pending = m["content"]
            if system and not segments:  # Llama-2's system prompt sits inside the first instruction
                pending = f"<<SYS>>\n{system}\n<</SYS>>\n\n{pending}"
            continue
        if pending is None:
            raise ValueError("the llama2 template needs each assistant turn to follow a user turn")
        sep = "\n" if segments else ""
        segments += [Segment(f"{sep}[INST] {pending} [/INST]\n", False), Segment(m["content"] + eos, True)]
        pending = None
    return segments


def _chat_template(messages: Sequence[dict[str, str]], tokenizer: Any) -> list[Segment]:
    """The tokenizer's template, split where each assistant turn starts and ends: the text the template
    renders through turn i, less what it renders before it with the generation prompt, is turn i."""
    segments: list[Segment] = []
    done = ""
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = tokenizer.apply_chat_template(list(messages[:i]), tokenize=False, add_generation_prompt=True)
        through = tokenizer.apply_chat_template(list(messages[: i + 1]), tokenize=False)
        if not (before.startswith(done) and through.startswith(before)):
            raise ValueError("the tokenizer's chat template does not render turns as prefixes of each other")
        segments += [Segment(before[len(done) :], False), Segment(through[len(before) :], True)]
        done = through
    return _merged(segments)


def _merged(segments: list[Segment]) -> list[Segment]:
    """Adjacent segments of the same kind joined (fewer tokenizer calls, fewer boundaries)."""
    out: list[Segment] = []
    for seg in segments:
        if seg.text == "":
            continue
        if out and out[-1].learn == seg.learn:
            out[-1] = Segment(out[-1].text + seg.text, seg.learn)
        else:
            out.append(seg)
    return out
