"""The teacher's prompt: the student's own prompt with the feedback added to the user's turn as hindsight
context (CLaaS's wording, exactly), tokenized the way the sampler tokenized the student's prompt, so the two
differ only by the hindsight. The response ids follow it unchanged (the caller appends them)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from lyceum_ml.chat import Message, render
from lyceum_ml.sft.base import BaseLM

HINDSIGHT = (
    "\n\n=== HINDSIGHT CONTEXT ===\n"
    "[The following is a future user message. Use this to guide your answer to the user prompt.]\n"
)


def _message(m: Message | Mapping[str, str]) -> Message:
    return m if isinstance(m, Message) else Message(str(m["role"]), str(m["content"]))


def teacher_messages(messages: Sequence[Message | Mapping[str, str]], feedback: str) -> list[Message]:
    """The conversation with HINDSIGHT + feedback appended to its last user turn; every other turn (the
    system prompt included) unchanged, so the teacher sees the student's context. A conversation without a
    user turn gets one holding the hindsight."""
    turns = [_message(m) for m in messages]
    last = max((i for i, m in enumerate(turns) if m.role == "user"), default=None)
    if last is None:
        return [*turns, Message("user", HINDSIGHT + feedback)]
    turns[last] = Message("user", turns[last].content + HINDSIGHT + feedback)
    return turns


def teacher_prompt_ids(
    base: BaseLM,
    messages: Sequence[Message | Mapping[str, str]] | None,
    prompt_ids: Sequence[int],
    feedback: str,
) -> list[int]:
    """The teacher's prompt ids. A chat completion (`messages`, as recorded in its params) is re-rendered
    with the same chat template the sampler chose, generation prompt included, and tokenized as the sampler
    does (no special tokens added: any BOS is the template's own text). A legacy completion (no messages)
    keeps its recorded prompt ids verbatim and appends the tokenized HINDSIGHT + feedback + newline, so the
    prompt is never re-tokenized from decoded text."""
    if not feedback.strip():
        raise ValueError("feedback must not be empty")
    if messages:
        text, _ = render(teacher_messages(messages, feedback), base.chat_tokenizer)
        return list(base.tokenize(text))
    if not prompt_ids:
        raise ValueError("a completion without messages needs its prompt ids")
    return [*prompt_ids, *base.tokenize(HINDSIGHT + feedback + "\n")]
