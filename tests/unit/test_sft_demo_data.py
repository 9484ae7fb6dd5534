"""The committed SFT demo dataset (examples/sft/): what scripts/make_sft_demo_data.py writes from its seed,
every answer in the one checkable style, and a held-out set that asks none of the training questions."""

from __future__ import annotations

import json

import make_sft_demo_data as demo


def _rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (demo.OUT_DIR / name).read_text().splitlines()]


def test_the_committed_files_are_what_the_seeded_script_writes() -> None:
    for name, text in demo.build(seed=0).items():
        assert (demo.OUT_DIR / name).read_text() == text, (
            f"{name} is stale: run scripts/make_sft_demo_data.py"
        )
    assert demo.build(seed=1) != demo.build(seed=0)


def test_every_answer_is_in_style_and_the_held_out_questions_are_new() -> None:
    train, valid = _rows(demo.TRAIN), _rows(demo.VALID)
    assert (len(train), len(valid)) == (demo.N_TRAIN, demo.N_VALID)
    for row in train + valid:
        user, assistant = row["messages"]
        assert (user["role"], assistant["role"]) == ("user", "assistant")
        assert demo.in_style(assistant["content"]) and not demo.in_style(user["content"])
        assert len(assistant["content"]) < 200  # short answers: a quick fine-tune
    questions = [row["messages"][0]["content"] for row in train + valid]
    assert len(set(questions)) == len(questions)

    assert demo.in_style("Great question, learner! 2 plus 2 is 4. Keep learning!")
    assert not demo.in_style("2 plus 2 is 4.")
    assert not demo.in_style("Great question, learner! 2 plus 2 is 4.")
