"""Dataset formats (lyceum_jobs.datasets): the row rules of each format, the first bad row or line named,
reading JSON/JSONL/CSV/text files, the DFM files' structural checks, PII scrubbing, cleaning counts on a
crafted input, and statistics (with a real `tokenizers` tokenizer)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from lyceum_core.errors import InvalidArgument
from lyceum_jobs.datasets import (
    FORMATS,
    SFT_FORMATS,
    CleaningOptions,
    check_dfm,
    check_row,
    clean,
    data_file,
    describe,
    prepare,
    read_rows,
    row_text,
    scrub_pii,
)

ALPACA = {"instruction": "Add 2 and 2.", "input": "", "output": "4"}
CHAT = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}
COMPLETION = {"prompt": "2 + 2 =", "completion": " 4"}


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_the_formats_are_defined_once() -> None:
    assert SFT_FORMATS == ("alpaca", "chat", "completion")
    assert set(FORMATS) == {"alpaca", "chat", "completion", "text", "kt3", "pykt", "jsonl"}
    assert [data_file(f) for f in ("alpaca", "text", "kt3", "pykt", "jsonl")] == [
        "data.jsonl",
        "data.jsonl",
        "data.txt",
        "data.csv",
        "data.jsonl",
    ]


# --- row rules ------------------------------------------------------------------------------------------


def test_valid_rows_are_normalised() -> None:
    assert check_row("alpaca", {"instruction": "Say hi", "output": "hi", "extra": 1}, 0) == {
        "instruction": "Say hi",
        "input": "",
        "output": "hi",
    }
    assert check_row("alpaca", {**ALPACA, "input": None}, 0)["input"] == ""
    assert check_row("chat", {"messages": [*CHAT["messages"]], "id": 7}, 0) == CHAT
    assert check_row("completion", {"prompt": "", "completion": "x"}, 0) == {"prompt": "", "completion": "x"}
    assert check_row("text", "a document", 0) == {"text": "a document"}
    assert check_row("text", {"text": "doc", "meta": {}}, 0) == {"text": "doc"}


@pytest.mark.parametrize(
    ("format", "row", "message"),
    [
        ("alpaca", {"instruction": "x", "output": ""}, "row 17: output: must be a non-empty string"),
        ("alpaca", {"instruction": "x", "output": "  \n"}, "row 17: output: must be a non-empty string"),
        ("alpaca", {"instruction": "x"}, "row 17: output: missing"),
        (
            "alpaca",
            {"instruction": 3, "output": "y"},
            "row 17: instruction: must be a non-empty string, got a number",
        ),
        ("alpaca", {"instruction": "x", "input": [], "output": "y"}, "row 17: input: must be a string"),
        ("alpaca", ["x", "y"], "row 17: must be a JSON object, got an array"),
        ("chat", {"messages": []}, "row 17: messages: must be a non-empty list"),
        ("chat", {}, "row 17: messages: must be a non-empty list"),
        ("chat", {"messages": ["hi"]}, "row 17: messages[0]: must be an object"),
        (
            "chat",
            {"messages": [{"role": "bot", "content": "x"}]},
            "row 17: messages[0].role: must be one of system, user, assistant, got 'bot'",
        ),
        (
            "chat",
            {"messages": [{"role": "user", "content": None}]},
            "row 17: messages[0].content: must be a string",
        ),
        (
            "chat",
            {"messages": [{"role": "user", "content": "hi"}]},
            "row 17: messages: needs an assistant turn",
        ),
        ("completion", {"prompt": "x", "completion": ""}, "row 17: completion: must be a non-empty string"),
        ("completion", {"completion": "y"}, "row 17: prompt: missing"),
        ("text", {"text": ""}, "row 17: text: must be a non-empty string"),
        ("text", 5, "row 17: must be a JSON object, got a number"),
    ],
)
def test_a_bad_row_is_named_with_its_field(format: str, row: object, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        check_row(format, row, 16)
    assert info.value.message.startswith(message), info.value.message


def test_row_text_joins_the_strings() -> None:
    assert row_text("alpaca", check_row("alpaca", {**ALPACA, "input": "now"}, 0)) == "Add 2 and 2.\nnow\n4"
    assert row_text("alpaca", check_row("alpaca", ALPACA, 0)) == "Add 2 and 2.\n4"
    assert row_text("chat", CHAT) == "Hi\nHello!"
    assert row_text("completion", COMPLETION) == "2 + 2 = 4"


# --- files ----------------------------------------------------------------------------------------------


def test_read_rows_from_json_jsonl_and_csv(tmp_path: Path) -> None:
    rows = [ALPACA, {"instruction": "Name a colour.", "input": "warm", "output": "red"}]
    (tmp_path / "a.json").write_text(json.dumps(rows))
    write_jsonl(tmp_path / "a.jsonl", rows)
    (tmp_path / "a.csv").write_text(
        "instruction,input,output\nAdd 2 and 2.,,4\nName a colour.,warm,red\n", encoding="utf-8"
    )
    with (tmp_path / "chat.csv").open("w", newline="") as f:
        csv.writer(f).writerows([["messages"], [json.dumps(CHAT["messages"])]])
    expected = [check_row("alpaca", row, i) for i, row in enumerate(rows)]

    assert read_rows(tmp_path / "a.json", "alpaca") == expected
    assert read_rows(tmp_path / "a.jsonl", "alpaca") == expected
    assert read_rows(tmp_path / "a.csv", "alpaca") == expected
    assert read_rows(tmp_path / "chat.csv", "chat") == [CHAT]


def test_text_files_split_into_documents(tmp_path: Path) -> None:
    (tmp_path / "blank.txt").write_text("first doc\nstill first\n\n  \nsecond doc\n")
    (tmp_path / "eot.txt").write_text("one\n\nstill one<|endoftext|>two<|endoftext|>")

    assert read_rows(tmp_path / "blank.txt", "text") == [
        {"text": "first doc\nstill first"},
        {"text": "second doc"},
    ]
    assert read_rows(tmp_path / "eot.txt", "text") == [{"text": "one\n\nstill one"}, {"text": "two"}]


def test_the_first_bad_row_of_a_file_is_named(tmp_path: Path) -> None:
    rows = [ALPACA] * 16 + [{"instruction": "x", "output": ""}] + [{"bad": True}]
    write_jsonl(tmp_path / "a.jsonl", rows)
    (tmp_path / "b.jsonl").write_text(json.dumps(ALPACA) + "\n\n" + "{oops\n")
    (tmp_path / "c.json").write_text(json.dumps({"rows": rows}))
    (tmp_path / "d.csv").write_text("instruction,input\nx,y\n")
    (tmp_path / "e.txt").write_text("plain text")

    cases = {
        "a.jsonl": "row 17: output: must be a non-empty string",
        "b.jsonl": "row 2: invalid JSON",
        "c.json": "a JSON file must hold an array",
        "d.csv": "the CSV header lacks the column(s) output",
        "e.txt": "a plain-text file holds no alpaca rows",
    }
    for name, message in cases.items():
        with pytest.raises(InvalidArgument) as info:
            read_rows(tmp_path / name, "alpaca")
        assert info.value.message.startswith(message), (name, info.value.message)
        assert info.value.field == "file"


def test_non_utf8_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_bytes(b'{"text": "caf\xe9"}\n')
    with pytest.raises(InvalidArgument, match="not UTF-8"):
        read_rows(tmp_path / "a.jsonl", "text")


# --- DFM files ------------------------------------------------------------------------------------------


def test_dfm_files_are_counted_and_their_first_bad_line_named(tmp_path: Path) -> None:
    (tmp_path / "ok.kt3").write_text("3\n1,2,3\n1,0,1\n\n2\n4,5,\n0,1\n")
    (tmp_path / "bad.kt3").write_text("3\n1,2,3\n1,0,1\n2\n4,5\n0,7\n")
    (tmp_path / "ok.csv").write_text('fold,uid,concepts,responses\n0,u1,"1,2_3,-1","1,0,-1"\n1,u2,"4","1"\n')
    (tmp_path / "bad.csv").write_text('fold,uid,concepts,responses\n0,u1,"1,2","1"\n')
    write_jsonl(
        tmp_path / "ok.jsonl", [{"tasks": ["a", 2], "outcomes": [1, 0.5]}, {"tasks": [], "outcomes": []}]
    )
    write_jsonl(
        tmp_path / "bad.jsonl", [{"tasks": ["a"], "outcomes": [1]}, {"tasks": ["a"], "outcomes": ["1"]}]
    )

    assert (check_dfm(tmp_path / "ok.kt3", "kt3").rows, check_dfm(tmp_path / "ok.kt3", "kt3").events) == (
        2,
        5,
    )
    assert check_dfm(tmp_path / "ok.csv", "pykt").events == 3
    assert check_dfm(tmp_path / "ok.jsonl", "jsonl").rows == 2
    for name, format, message in [
        ("bad.kt3", "kt3", "line 6: outcome '7' outside [0, 1]"),
        ("bad.csv", "pykt", "line 2: 2 concepts but 1 responses"),
        ("bad.jsonl", "jsonl", "line 2: non-numeric outcome '1'"),
        ("ok.csv", "kt3", "line 1: expected a count of events"),
    ]:
        with pytest.raises(InvalidArgument) as info:
            check_dfm(tmp_path / name, format)
        assert info.value.message == message or info.value.message.startswith(message), info.value.message


# --- PII and cleaning -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "scrubbed", "kinds"),
    [
        ("write to jane.doe+news@mail.example.org.", "write to [EMAIL].", {"email": 1}),
        ("call +1 415-555-0132 or (415) 555-0132", "call [PHONE] or [PHONE]", {"phone": 2}),
        ("ring 415.555.0132, or +44 20 7946 0958", "ring [PHONE], or [PHONE]", {"phone": 2}),
        ("card 4111 1111 1111 1111 / 5500-0000-0000-0004", "card [CARD] / [CARD]", {"card": 2}),
        ("host 192.168.0.1 and 2001:db8::8a2e:370:7334.", "host [IP] and [IP].", {"ip": 2}),
        ("loopback ::1 and fe80::1", "loopback [IP] and [IP]", {"ip": 2}),
        # Not PII: dates, times, versions, an invalid IP, a Luhn-failing number, plain numbers, C++.
        (
            "on 2024-01-15 at 12:30:45, v1.2.3, 256.1.1.1, 4111 1111 1111 1112, 3.14159, 12345678, std::map",
            None,
            {},
        ),
    ],
)
def test_pii_is_replaced_by_placeholders(text: str, scrubbed: str | None, kinds: dict[str, int]) -> None:
    out, counts = scrub_pii(text)
    assert out == (text if scrubbed is None else scrubbed)
    assert dict(counts) == kinds


def test_cleaning_counts_are_exact_on_a_crafted_input() -> None:
    rows = [
        {"instruction": "Email bob@example.com", "input": "", "output": "Done."},  # scrubbed
        {
            "instruction": "Email eve@example.com",
            "input": "",
            "output": "Done.",
        },  # scrubbed -> duplicate of 1
        {"instruction": "Say hi", "input": "", "output": "hi"},  # too short (9 chars)
        {"instruction": "Tell a story", "input": "", "output": "x" * 100},  # too long
        {"instruction": "Repeat", "input": "", "output": "Repeat after me"},
        {"instruction": "Repeat", "input": "", "output": "Repeat after me"},  # duplicate
        {"instruction": "Call +1 415-555-0132 from 10.0.0.1", "input": "", "output": "Calling."},  # 2 PII
    ]
    rows = [check_row("alpaca", row, i) for i, row in enumerate(rows)]
    options = CleaningOptions(dedupe=True, scrub_pii=True, min_length=10, max_length=80)

    kept, report = clean("alpaca", rows, options)

    assert [r["instruction"] for r in kept] == ["Email [EMAIL]", "Repeat", "Call [PHONE] from [IP]"]
    assert report == {
        "options": {"dedupe": True, "scrub_pii": True, "min_length": 10, "max_length": 80},
        "rows_in": 7,
        "rows_out": 3,
        "pii_rows_changed": 3,
        "pii_replacements": {"email": 2, "phone": 1, "card": 0, "ip": 1},
        "duplicates_removed": 2,
        "too_short_removed": 1,
        "too_long_removed": 1,
    }


def test_chat_scrubbing_leaves_roles_alone() -> None:
    row = {
        "messages": [{"role": "user", "content": "I'm at 8.8.8.8"}, {"role": "assistant", "content": "ok"}]
    }
    kept, report = clean("chat", [row], CleaningOptions(scrub_pii=True))
    assert kept == [
        {"messages": [{"role": "user", "content": "I'm at [IP]"}, {"role": "assistant", "content": "ok"}]}
    ]
    assert report["pii_rows_changed"] == 1


def test_cleaning_options_are_checked() -> None:
    with pytest.raises(InvalidArgument) as info:
        CleaningOptions(min_length=10, max_length=5)
    assert info.value.field == "min_length"


# --- statistics -----------------------------------------------------------------------------------------


def word_tokenizer(words: list[str]) -> Tokenizer:
    tokenizer = Tokenizer(
        models.WordLevel({w: i for i, w in enumerate(["[UNK]", *words])}, unk_token="[UNK]")
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return tokenizer


def test_stats_count_rows_characters_tokens_duplicates_and_lengths() -> None:
    rows = [{"text": t} for t in ["a b", "a b", "a b c d", "x" * 10, "y y y y y y"]]
    tokenizer = word_tokenizer(["a", "b", "c", "d", "y"])

    stats = describe("text", rows, tokenizer)

    assert stats["rows"] == 5
    assert stats["characters"] == 3 + 3 + 7 + 10 + 11
    assert stats["tokens"] == 2 + 2 + 4 + 1 + 6
    assert stats["duplicate_rate"] == pytest.approx(1 / 5)
    assert stats["length_chars"] == {"min": 3, "p50": 7, "p90": 11, "p99": 11, "max": 11}
    assert stats["length_tokens"] == {"min": 1, "p50": 2, "p90": 6, "p99": 6, "max": 6}
    assert describe("text", rows)["tokens"] is None and describe("text", rows)["length_tokens"] is None


def test_percentiles_are_nearest_rank() -> None:
    rows = [{"text": "x" * n} for n in range(1, 101)]
    assert describe("text", rows)["length_chars"] == {"min": 1, "p50": 50, "p90": 90, "p99": 99, "max": 100}


# --- prepare: what an upload becomes --------------------------------------------------------------------


def test_prepare_writes_normalised_jsonl_with_stats_and_cleaning(tmp_path: Path) -> None:
    source = tmp_path / "up.csv"
    source.write_text("prompt,completion\nHi,there\nHi,there\nMail a@b.io,ok\n")
    dest = tmp_path / "out"
    dest.mkdir()

    prepared = prepare(source, "completion", dest, CleaningOptions(dedupe=True, scrub_pii=True))

    lines = (dest / "data.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"prompt": "Hi", "completion": "there"},
        {"prompt": "Mail [EMAIL]", "completion": "ok"},
    ]
    assert (prepared.data_file, prepared.rows, prepared.size_bytes) == (
        "data.jsonl",
        2,
        (dest / "data.jsonl").stat().st_size,
    )
    assert prepared.cleaning["duplicates_removed"] == 1 and prepared.stats["rows"] == 2


def test_prepare_refuses_empty_results_and_cleaning_of_dfm_files(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", [{"text": "short"}])
    (tmp_path / "h.jsonl").write_text(json.dumps({"tasks": [1], "outcomes": [1]}) + "\n")
    (tmp_path / "empty.jsonl").write_text("\n")
    dest = tmp_path / "out"
    dest.mkdir()

    with pytest.raises(InvalidArgument, match="cleaning removed every row"):
        prepare(tmp_path / "a.jsonl", "text", dest, CleaningOptions(min_length=100))
    with pytest.raises(InvalidArgument, match="holds no rows"):
        prepare(tmp_path / "empty.jsonl", "text", dest)
    with pytest.raises(InvalidArgument, match="not to jsonl files"):
        prepare(tmp_path / "h.jsonl", "jsonl", dest, CleaningOptions(dedupe=True))
    prepared = prepare(tmp_path / "h.jsonl", "jsonl", dest)
    assert (dest / "data.jsonl").read_bytes() == (tmp_path / "h.jsonl").read_bytes()
    assert prepared.stats == {"rows": 1, "events": 1}
