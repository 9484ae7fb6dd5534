"""The dataset formats and the rules of their rows, defined once: what a valid row of each text format is,
its normalised form (what is stored and what the trainer reads) and the text it counts as (length, PII)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from lyceum_core.errors import InvalidArgument

SFT_FORMATS = ("alpaca", "chat", "completion")
TEXT_FORMAT = "text"
ROW_FORMATS = (*SFT_FORMATS, TEXT_FORMAT)  # rows of JSON objects, stored normalised as JSONL
DFM_FORMATS = ("kt3", "pykt", "jsonl")  # learner histories, the DFM trainer's files, stored as uploaded
FORMATS = (*ROW_FORMATS, *DFM_FORMATS)
ROLES = ("system", "user", "assistant")

# The fields a row of each format has, the required ones first; a CSV header must name the required ones.
FIELDS: dict[str, tuple[str, ...]] = {
    "alpaca": ("instruction", "output", "input"),
    "chat": ("messages",),
    "completion": ("prompt", "completion"),
    "text": ("text",),
}
REQUIRED: dict[str, tuple[str, ...]] = {
    "alpaca": ("instruction", "output"),
    "chat": ("messages",),
    "completion": ("prompt", "completion"),
    "text": ("text",),
}


def check_format(format: str, allowed: tuple[str, ...] = FORMATS) -> str:
    """`format` if it is one of `allowed`; InvalidArgument naming them otherwise."""
    if format not in allowed:
        raise InvalidArgument(f"format must be one of {', '.join(allowed)}, got {format!r}", field="format")
    return format


def check_row(format: str, row: object, index: int) -> dict[str, Any]:
    """The normalised row (only the format's fields, `input` defaulting to ""), or InvalidArgument naming
    the row (`index` is 0-based, the message 1-based) and the field: `row 17: output: must be a non-empty
    string`. A text row may also be a bare string."""
    check_format(format, ROW_FORMATS)
    where = f"row {index + 1}"
    if format == TEXT_FORMAT and isinstance(row, str):
        row = {"text": row}
    if not isinstance(row, Mapping):
        raise InvalidArgument(f"{where}: must be a JSON object, got {_kind(row)}", field="row")
    return _CHECKS[format](row, where)


def row_text(format: str, row: Mapping[str, Any]) -> str:
    """The text a normalised row counts as, for length limits, duplicates and statistics: its strings joined
    by newlines (alpaca: instruction, input when non-empty, output; chat: the contents; completion: prompt
    and completion)."""
    if format == "alpaca":
        return "\n".join(p for p in (row["instruction"], row["input"], row["output"]) if p)
    if format == "chat":
        return "\n".join(m["content"] for m in row["messages"])
    if format == "completion":
        return row["prompt"] + row["completion"]
    return row["text"]


def map_strings(format: str, row: Mapping[str, Any], fn: Callable[[str], str]) -> dict[str, Any]:
    """The normalised row with `fn` applied to every free-text string (not to chat roles)."""
    if format == "chat":
        return {"messages": [{"role": m["role"], "content": fn(m["content"])} for m in row["messages"]]}
    return {key: fn(value) for key, value in row.items()}


# --- the rules --------------------------------------------------------------------------------------------


def _alpaca(row: Mapping[str, Any], where: str) -> dict[str, Any]:
    return {
        "instruction": _string(row, "instruction", where),
        "input": _string(row, "input", where, required=False, empty=True),
        "output": _string(row, "output", where),
    }


def _chat(row: Mapping[str, Any], where: str) -> dict[str, Any]:
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidArgument(
            f"{where}: messages: must be a non-empty list of {{role, content}}, got {_kind(messages)}",
            field="messages",
        )
    out = []
    for i, message in enumerate(messages):
        at = f"messages[{i}]"
        if not isinstance(message, Mapping):
            raise InvalidArgument(f"{where}: {at}: must be an object, got {_kind(message)}", field=at)
        role = message.get("role")
        if role not in ROLES:
            shown = f"{where}: {at}.role: must be one of {', '.join(ROLES)}, got {_shown(role)}"
            raise InvalidArgument(shown, field=f"{at}.role")
        content = message.get("content")
        if not isinstance(content, str):
            shown = f"{where}: {at}.content: must be a string, got {_kind(content)}"
            raise InvalidArgument(shown, field=f"{at}.content")
        out.append({"role": role, "content": content})
    if not any(m["role"] == "assistant" and m["content"].strip() for m in out):
        raise InvalidArgument(
            f"{where}: messages: needs an assistant turn with content (what the model learns)",
            field="messages",
        )
    return {"messages": out}


def _completion(row: Mapping[str, Any], where: str) -> dict[str, Any]:
    return {
        "prompt": _string(row, "prompt", where, empty=True),
        "completion": _string(row, "completion", where),
    }


def _text(row: Mapping[str, Any], where: str) -> dict[str, Any]:
    return {"text": _string(row, "text", where)}


_CHECKS: dict[str, Callable[[Mapping[str, Any], str], dict[str, Any]]] = {
    "alpaca": _alpaca,
    "chat": _chat,
    "completion": _completion,
    "text": _text,
}


def _string(
    row: Mapping[str, Any], key: str, where: str, *, required: bool = True, empty: bool = False
) -> str:
    """`row[key]` as a string. Optional fields may be missing or null (then ""); `empty` allows "" and
    whitespace, else the string must have some non-space character."""
    value = row.get(key)
    if value is None and not required:
        return ""
    if key not in row:
        raise InvalidArgument(f"{where}: {key}: missing", field=key)
    if not isinstance(value, str):
        rule = "a string" if empty else "a non-empty string"
        raise InvalidArgument(f"{where}: {key}: must be {rule}, got {_kind(value)}", field=key)
    if not empty and not value.strip():
        raise InvalidArgument(f"{where}: {key}: must be a non-empty string", field=key)
    return value


def _kind(value: object) -> str:
    """A JSON value's type as a user wrote it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string" if value else "an empty string"
    if isinstance(value, list):
        return "an array" if value else "an empty array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _shown(value: object) -> str:
    return repr(value[:40]) if isinstance(value, str) else _kind(value)
