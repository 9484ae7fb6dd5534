"""Optional cleaning of an upload's rows, as the LLM Playground offers it: PII scrubbing (e-mail
addresses, phone numbers, card numbers, IPv4/IPv6 addresses become `[EMAIL]`, `[PHONE]`, `[CARD]`, `[IP]`),
exact-duplicate removal and length limits, with counts of what each rule changed. Rules run in that order:
scrubbing first, so rows that differed only in an address count as duplicates."""

from __future__ import annotations

import ipaddress
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from lyceum_core.errors import InvalidArgument
from lyceum_jobs.datasets.rows import map_strings, row_text

PII_KINDS = ("email", "phone", "card", "ip")
PLACEHOLDERS = {"email": "[EMAIL]", "phone": "[PHONE]", "card": "[CARD]", "ip": "[IP]"}

_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w-])")
# Candidates only: each is confirmed by the standard library's parser.
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|:|\d{1,3}(?:\.\d{1,3}){3})(?![\w:]|\.\d)"
)
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?![\w]|\.\d)")
# 13-19 digits, optionally grouped by spaces or dashes; confirmed by the Luhn checksum.
_CARD = re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-])")
_PHONE = re.compile(
    r"(?<![\w+])(?:"
    r"\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}"  # +44 20 7946 0958, +1-555-010-9999
    r"|\(\d{2,4}\)[ .-]?\d{3,4}[ .-]?\d{3,4}"  # (555) 010-9999
    r"|\d{3}[.-]\d{3}[.-]\d{4}"  # 555-010-9999
    r")(?![\w])"
)
_PHONE_DIGITS = (7, 15)  # E.164 allows at most 15


@dataclass(frozen=True, slots=True)
class CleaningOptions:
    """Which rules run: `dedupe` drops exact duplicates (after scrubbing; the first stays), `scrub_pii`
    replaces PII by placeholders, `min_length`/`max_length` drop rows whose text (`row_text`) has fewer/more
    characters."""

    dedupe: bool = False
    scrub_pii: bool = False
    min_length: int | None = None
    max_length: int | None = None

    def __post_init__(self) -> None:
        if self.min_length is not None and self.min_length < 0:
            raise InvalidArgument(f"min_length must be >= 0, got {self.min_length}", field="min_length")
        if self.max_length is not None and self.max_length < 1:
            raise InvalidArgument(f"max_length must be >= 1, got {self.max_length}", field="max_length")
        if self.min_length is not None and self.max_length is not None and self.min_length > self.max_length:
            shown = f"min_length ({self.min_length}) exceeds max_length ({self.max_length})"
            raise InvalidArgument(shown, field="min_length")

    @property
    def active(self) -> bool:
        return self.dedupe or self.scrub_pii or self.min_length is not None or self.max_length is not None


def scrub_pii(text: str) -> tuple[str, Counter[str]]:
    """`text` with e-mail addresses, IP addresses, card numbers (Luhn-valid) and phone numbers replaced by
    their placeholders, and how many of each were replaced."""
    counts: Counter[str] = Counter()

    def sub(pattern: re.Pattern[str], kind: str, text: str, valid: Any = None) -> str:
        def replace(match: re.Match[str]) -> str:
            if valid is not None and not valid(match.group()):
                return match.group()
            counts[kind] += 1
            return PLACEHOLDERS[kind]

        return pattern.sub(replace, text)

    # E-mail first (an address may hold digits and dots), then IPs, then cards before phones (longer runs).
    text = sub(_EMAIL, "email", text)
    text = sub(_IPV6, "ip", text, _is_ipv6)
    text = sub(_IPV4, "ip", text)
    text = sub(_CARD, "card", text, _luhn)
    text = sub(_PHONE, "phone", text, _phone_digits)
    return text, counts


def clean(
    format: str, rows: Iterable[Mapping[str, Any]], options: CleaningOptions
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The rows that remain and what each rule did: `{"options", "rows_in", "rows_out", "pii_rows_changed",
    "pii_replacements": {kind: n}, "duplicates_removed", "too_short_removed", "too_long_removed"}`."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    replacements: Counter[str] = Counter()
    rows_in = changed = duplicates = short = long = 0
    for row in rows:
        rows_in += 1
        row = dict(row)
        if options.scrub_pii:
            found: Counter[str] = Counter()

            def scrub(text: str, found: Counter[str] = found) -> str:
                text, counts = scrub_pii(text)
                found.update(counts)
                return text

            row = map_strings(format, row, scrub)
            if found:
                changed += 1
                replacements.update(found)
        if options.dedupe:
            key = row_key(row)
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
        length = len(row_text(format, row))
        if options.min_length is not None and length < options.min_length:
            short += 1
            continue
        if options.max_length is not None and length > options.max_length:
            long += 1
            continue
        out.append(row)
    report = {
        "options": asdict(options),
        "rows_in": rows_in,
        "rows_out": len(out),
        "pii_rows_changed": changed,
        "pii_replacements": {kind: replacements[kind] for kind in PII_KINDS},
        "duplicates_removed": duplicates,
        "too_short_removed": short,
        "too_long_removed": long,
    }
    return out, report


def row_key(row: Mapping[str, Any]) -> str:
    """A normalised row's identity for exact-duplicate detection: its canonical JSON."""
    return json.dumps(row, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _luhn(text: str) -> bool:
    digits = [int(c) for c in text if c.isdigit()]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _phone_digits(text: str) -> bool:
    low, high = _PHONE_DIGITS
    return low <= sum(c.isdigit() for c in text) <= high


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True
