"""Writes the SFT demo dataset (examples/sft/): short chat conversations whose every answer is in one fixed,
checkable style, "Great question, learner! <answer> Keep learning!", over questions built from templates
(arithmetic, spelling, letter counts, parity, counting, capitals, opposites, definitions). A 135M instruct
model learns the style with LoRA in a few minutes on a CPU; `in_style` checks an answer. Seeded: the same seed
writes the same files.

    python scripts/make_sft_demo_data.py            # (re)writes examples/sft/tutor_style{,_valid}.jsonl
    python scripts/make_sft_demo_data.py --check    # fails if the committed files differ from a fresh run
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parents[1] / "examples" / "sft"
TRAIN, VALID = "tutor_style.jsonl", "tutor_style_valid.jsonl"
OPENING, SIGN_OFF = "Great question, learner!", "Keep learning!"
STYLE = re.compile(rf"^{re.escape(OPENING)} \S.* {re.escape(SIGN_OFF)}$", re.DOTALL)
N_TRAIN, N_VALID = 400, 40

WORDS = (
    "apple banana garden window planet river castle pencil rocket summer winter island forest yellow "
    "orange purple bridge candle dragon friend guitar hammer jacket kitten ladder market number ocean "
    "pillow puzzle rabbit silver spider teacher tiger tomato turtle violin wagon wizard zebra camera "
    "cookie flower honey insect lemon magnet monkey nature paper pepper pirate school shadow station"
).split()
CAPITALS = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "Japan": "Tokyo",
    "Canada": "Ottawa", "Egypt": "Cairo", "Kenya": "Nairobi", "Peru": "Lima", "Norway": "Oslo",
    "Sweden": "Stockholm", "Greece": "Athens", "Portugal": "Lisbon", "Ireland": "Dublin", "Poland": "Warsaw",
    "Austria": "Vienna", "Chile": "Santiago", "Cuba": "Havana", "India": "New Delhi", "China": "Beijing",
    "Brazil": "Brasilia", "Mexico": "Mexico City", "Argentina": "Buenos Aires", "Australia": "Canberra",
    "Finland": "Helsinki", "Denmark": "Copenhagen", "Hungary": "Budapest", "Thailand": "Bangkok",
    "Vietnam": "Hanoi", "Turkey": "Ankara", "Morocco": "Rabat", "Ghana": "Accra",
}  # fmt: skip
OPPOSITES = {
    "hot": "cold", "big": "small", "fast": "slow", "happy": "sad", "light": "dark", "up": "down",
    "open": "closed", "early": "late", "full": "empty", "loud": "quiet", "strong": "weak", "young": "old",
    "wet": "dry", "hard": "soft", "high": "low", "near": "far", "rich": "poor", "begin": "end",
    "win": "lose", "day": "night", "push": "pull", "first": "last", "above": "below", "sweet": "sour",
}  # fmt: skip
DEFINITIONS = {
    "a noun": "a word that names a person, place or thing",
    "a verb": "a word that describes an action",
    "an adjective": "a word that describes a noun",
    "a prime number": "a whole number above 1 whose only divisors are 1 and itself",
    "a triangle": "a shape with three straight sides",
    "a square": "a shape with four equal sides and four right angles",
    "photosynthesis": "how plants turn sunlight, water and air into food",
    "evaporation": "when a liquid turns into a gas",
    "gravity": "the force that pulls things towards each other",
    "a mammal": "a warm-blooded animal that feeds its young with milk",
    "a planet": "a large body that travels around a star",
    "a fraction": "a part of a whole, written like 1/2",
    "an island": "land with water all around it",
    "a volcano": "a mountain that can let out hot melted rock",
    "a synonym": "a word that means the same as another word",
    "a habitat": "the natural home of an animal or plant",
}
NUMBER_WORDS = "zero one two three four five six seven eight nine ten eleven twelve".split()


def arithmetic(rng: random.Random) -> tuple[str, str]:
    op = rng.choice(["plus", "minus", "times"])
    a, b = (
        (rng.randint(2, 12), rng.randint(2, 12))
        if op == "times"
        else (rng.randint(1, 99), rng.randint(1, 99))
    )
    if op == "minus" and b > a:
        a, b = b, a
    result = {"plus": a + b, "minus": a - b, "times": a * b}[op]
    question = rng.choice([f"What is {a} {op} {b}?", f"Can you tell me what {a} {op} {b} is?"])
    return question, f"{a} {op} {b} is {result}."


def spelling(rng: random.Random) -> tuple[str, str]:
    word = rng.choice(WORDS)
    question = rng.choice([f"How do you spell {word}?", f"Please spell the word {word}."])
    return question, f"The word {word} is spelled {'-'.join(word.upper())}."


def letter_count(rng: random.Random) -> tuple[str, str]:
    word = rng.choice(WORDS)
    count = NUMBER_WORDS[len(word)] if len(word) < len(NUMBER_WORDS) else str(len(word))
    question = rng.choice(
        [f"How many letters are in the word {word}?", f"How many letters does {word} have?"]
    )
    return question, f"The word {word} has {count} letters."


def parity(rng: random.Random) -> tuple[str, str]:
    n = rng.randint(1, 200)
    return f"Is {n} an even or an odd number?", f"{n} is an {'even' if n % 2 == 0 else 'odd'} number."


def successor(rng: random.Random) -> tuple[str, str]:
    n = rng.randint(1, 500)
    return f"What number comes after {n}?", f"The number after {n} is {n + 1}."


def capital(rng: random.Random) -> tuple[str, str]:
    country = rng.choice(sorted(CAPITALS))
    question = rng.choice([f"What is the capital of {country}?", f"Which city is the capital of {country}?"])
    return question, f"The capital of {country} is {CAPITALS[country]}."


def opposite(rng: random.Random) -> tuple[str, str]:
    word = rng.choice(sorted(OPPOSITES))
    question = rng.choice([f"What is the opposite of {word}?", f"What word means the opposite of {word}?"])
    return question, f"The opposite of {word} is {OPPOSITES[word]}."


def definition(rng: random.Random) -> tuple[str, str]:
    term = rng.choice(sorted(DEFINITIONS))
    question = rng.choice([f"What is {term}?", f"Can you explain what {term} is?", f"Define {term}, please."])
    meaning = DEFINITIONS[term]
    return question, f"{term[0].upper()}{term[1:]} is {meaning}."


KINDS = (arithmetic, spelling, letter_count, parity, successor, capital, opposite, definition)


def in_style(answer: str) -> bool:
    """Whether an answer opens with the fixed greeting and ends with the fixed sign-off."""
    return STYLE.match(answer.strip()) is not None


def conversations(n: int, seed: int) -> list[dict]:
    """`n` conversations with distinct questions (one user question, one styled answer), of random kinds."""
    rng, seen, rows = random.Random(seed), set(), []
    for _ in range(100 * n):
        if len(rows) == n:
            break
        question, answer = rng.choice(KINDS)(rng)
        if question in seen:
            continue
        seen.add(question)
        messages = [
            {"role": "user", "content": question},
            {"role": "assistant", "content": f"{OPENING} {answer} {SIGN_OFF}"},
        ]
        rows.append({"messages": messages})
    if len(rows) < n:
        raise ValueError(f"the templates ask only {len(rows)} distinct questions, fewer than {n}")
    return rows


def build(seed: int = 0) -> dict[str, str]:
    """File name -> JSONL text: the training set and a held-out set whose questions it never asks."""
    rows = conversations(N_TRAIN + N_VALID, seed)
    random.Random(seed + 1).shuffle(rows)
    splits = {TRAIN: rows[:N_TRAIN], VALID: rows[N_TRAIN:]}
    return {name: "".join(json.dumps(row) + "\n" for row in split) for name, split in splits.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check", action="store_true", help="compare with the files in --out, write nothing")
    args = parser.parse_args()
    files = build(args.seed)
    if args.check:
        stale = [
            n
            for n, text in files.items()
            if not (args.out / n).is_file() or (args.out / n).read_text() != text
        ]
        if stale:
            print(f"stale: {', '.join(stale)} (run scripts/make_sft_demo_data.py)", file=sys.stderr)
            return 1
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (args.out / name).write_text(text)
        print(f"{args.out / name}: {text.count(chr(10))} conversations")
    return 0


if __name__ == "__main__":
    sys.exit(main())
