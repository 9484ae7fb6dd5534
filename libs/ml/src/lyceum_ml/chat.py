"""Chat turns -> a prompt: the tokenizer's own `chat_template` when the model has one, else Lyceum's
ChatML-style default, which Lyceum's LMs are fine-tuned with (the SFT jobs render conversations with it too):

    <|im_start|>system\\n{content}<|im_end|>\\n<|im_start|>user\\n{content}<|im_end|>\\n<|im_start|>assistant\\n

Generation from a chat prompt stops at the end of the assistant's turn (`<|im_end|>`, or the tokenizer's end
of sequence for its own template)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

ROLES = ("system", "user", "assistant")
TURN_START, TURN_END = "<|im_start|>", "<|im_end|>"


@dataclass(frozen=True)
class Message:
    role: str
    content: str


def check_messages(messages: Sequence[Message]) -> None:
    """ValueError naming the problem: no messages, or a role other than system/user/assistant."""
    if not messages:
        raise ValueError("messages must not be empty")
    for i, m in enumerate(messages):
        if m.role not in ROLES:
            raise ValueError(f"messages[{i}].role must be one of {ROLES}, got {m.role!r}")


def chatml(messages: Sequence[Message], add_generation_prompt: bool = True) -> str:
    """The default template: every turn framed, then the assistant's turn opened."""
    check_messages(messages)
    text = "".join(f"{TURN_START}{m.role}\n{m.content}{TURN_END}\n" for m in messages)
    return text + (f"{TURN_START}assistant\n" if add_generation_prompt else "")


def render(messages: Sequence[Message], tokenizer: Any = None) -> tuple[str, tuple[str, ...]]:
    """(prompt text, stop strings that end the assistant's turn). `tokenizer` is a transformers tokenizer
    with a `chat_template`, or None for the default."""
    check_messages(messages)
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        turns = [{"role": m.role, "content": m.content} for m in messages]
        text = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
        stops = tuple(s for s in (TURN_END,) if s in tokenizer.chat_template)
        return text, stops
    return chatml(messages), (TURN_END,)
