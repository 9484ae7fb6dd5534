"""The token wheel page in a real browser against the whole stack: a session on the served demo LM draws
a wheel (a wedge per token above the threshold, plus Other), a seeded spin and a picked wedge each grow the
text by one token, undo shrinks it, the same seed on a fresh session spins the same token, sliders reshape
the wheel (modulation included), bad input shows the API's error and changes nothing, and the page fits a
phone."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path

from fixtures.browser import PHONE
from playwright.sync_api import Locator, Page, expect

PROMPT = "Once upon a time"
# The tests' LM is small and untrained: a low threshold still gives it several wedges.
THRESHOLD = "0.015"


def start(page: Page, prompt: str = PROMPT) -> None:
    """Opens the wheel, sets the threshold, starts a session on lm-demo and waits for its wheel."""
    page.goto("/ui/#/wheel")
    expect(page.get_by_label("Model")).to_have_value(re.compile(r"^lm-demo"))
    page.get_by_label("Threshold value").fill(THRESHOLD)
    page.get_by_role("textbox", name="Prompt").fill(prompt)
    page.get_by_role("button", name="Start", exact=True).click()
    expect(page.get_by_role("heading", name=re.compile(r"^Tokens at or above 1\.5%"))).to_be_visible()
    expect(page.get_by_test_id("wheel-text")).to_have_text(prompt)
    ready(page)


def ready(page: Page) -> None:
    """Waits until the wheel shows the distribution after the session's current text."""
    expect(page.get_by_test_id("wheel")).to_have_attribute("data-ready", "true")


def click_wedge(page: Page, wedge: Locator) -> None:
    """Clicks the drawing itself, inside the wedge: at 60% of the radius on its middle angle (the viewBox is
    220 units wide with the centre 110 across and 116 down; an idle wheel is not rotated)."""
    box = page.get_by_test_id("wheel").bounding_box()
    assert box is not None
    start, end = float(wedge.get_attribute("data-start") or 0), float(wedge.get_attribute("data-end") or 0)
    angle = math.radians((start + end) / 2)
    scale = box["width"] / 220
    x = box["x"] + scale * (110 + 60 * math.sin(angle))
    y = box["y"] + scale * (116 - 60 * math.cos(angle))
    page.mouse.click(x, y)


def chosen(page: Page) -> Locator:
    return page.get_by_test_id("chosen-token")


def spin(page: Page, seed: int) -> None:
    page.get_by_label("Seed", exact=True).fill(str(seed))
    page.get_by_role("button", name="Spin", exact=True).click()


def test_spin_pick_and_undo(page: Page, shoot: Callable[[Page, str], Path]) -> None:
    start(page)
    wheel = page.get_by_test_id("wheel")
    expect(wheel).to_be_visible()
    expect(wheel.get_by_test_id("wedge").first).to_be_visible()
    expect(wheel.get_by_test_id("other-wedge")).to_have_count(1)
    wedges = wheel.get_by_test_id("wedge").count()
    assert wedges >= 2
    # every wedge is also a button named with its token and probability, and Other shows its size
    picks = page.get_by_role("button", name=re.compile(r"^Pick .*, [\d.]+%$"))
    expect(picks.first).to_be_visible()
    expect(page.get_by_role("heading", name=re.compile(r"^Other: \d+ tokens, [\d.]+%$"))).to_be_visible()
    shoot(page, "laptop-start")

    # a seeded spin turns the wheel and appends the drawn token
    spin(page, 7)
    expect(chosen(page)).to_have_count(1)
    expect(page.get_by_test_id("last-draw")).to_contain_text("Spin with seed 7:")
    expect(page.get_by_label("Seed", exact=True)).to_have_value("8")
    text_after_spin = page.get_by_test_id("wheel-text").inner_text()
    assert text_after_spin.startswith(PROMPT) and len(text_after_spin) > len(PROMPT)

    # picking a wedge (its button) appends exactly that token, recorded with the probability shown
    ready(page)
    first = page.get_by_test_id("wheel").get_by_test_id("wedge").first
    token_id = first.get_attribute("data-token-id")
    page.get_by_role("button", name=re.compile(r"^Pick ")).first.click()
    expect(chosen(page)).to_have_count(2)
    expect(chosen(page).nth(1)).to_have_attribute("data-token-id", token_id or "")
    expect(chosen(page).nth(1)).to_have_attribute("title", re.compile(r"\d%, above the threshold"))

    # clicking a wedge of the drawing itself picks it too
    ready(page)
    wedge = page.get_by_test_id("wheel").get_by_test_id("wedge").first  # the largest
    token_id = wedge.get_attribute("data-token-id")
    click_wedge(page, wedge)
    expect(chosen(page)).to_have_count(3)
    expect(chosen(page).nth(2)).to_have_attribute("data-token-id", token_id or "")
    ready(page)
    shoot(page, "laptop-grown")

    # undo removes the last token only
    page.get_by_role("button", name="Undo").click()
    expect(chosen(page)).to_have_count(2)
    expect(page.get_by_test_id("last-draw")).to_contain_text("Undone: removed")
    expect(page.get_by_test_id("token-count")).to_contain_text("2 tokens chosen")

    # the wedge buttons work from the keyboard
    ready(page)
    page.get_by_role("button", name=re.compile(r"^Pick ")).first.focus()
    page.keyboard.press("Enter")
    expect(chosen(page)).to_have_count(3)

    # drawing from Other appends a token from the Other bucket
    page.get_by_role("button", name="Draw from Other").click()
    expect(chosen(page)).to_have_count(4)
    expect(chosen(page).nth(3)).to_have_class(re.compile(r"\bother\b"))
    expect(page.get_by_test_id("last-draw")).to_contain_text("Draw from Other with seed 8:")


def test_same_seed_spins_the_same_token(page: Page) -> None:
    drawn = []
    for _ in range(2):  # a fresh page is a fresh session
        page.goto("about:blank")
        start(page)
        spin(page, 42)
        expect(chosen(page)).to_have_count(1)
        token = chosen(page).first.get_attribute("data-token-id")
        drawn.append((token, page.get_by_test_id("wheel-text").inner_text()))
        expect(page.get_by_test_id("last-draw")).to_contain_text("Spin with seed 42:")
    assert drawn[0] == drawn[1]


def test_sliders_reshape_the_wheel(page: Page) -> None:
    start(page)
    before = page.get_by_test_id("wheel").get_attribute("data-wedges")
    page.get_by_label("Threshold value").fill("0.5")
    expect(page.get_by_role("heading", name=re.compile(r"^Tokens at or above 50%"))).to_be_visible()
    expect(page.get_by_test_id("wheel")).not_to_have_attribute("data-wedges", before or "")
    page.get_by_label("Threshold value").fill(THRESHOLD)
    page.get_by_label("Top-k value").fill("3")
    # top-k 3 leaves three tokens with any probability: at most three to pick from, wedges and Other together
    expect(page.get_by_role("heading", name=re.compile(r"^Other: [0-3] tokens?,"))).to_be_visible()
    ready(page)
    assert page.get_by_role("button", name=re.compile(r"^Pick ")).count() <= 3

    # modulation makes the session gated (a new one, same text): its step's knobs are shown, the others locked
    spin(page, 3)
    expect(chosen(page)).to_have_count(1)
    text = page.get_by_test_id("wheel-text").inner_text()
    page.get_by_role("checkbox", name=re.compile(r"Modulate")).check()
    page.get_by_label("Modulation value").fill("0.2")
    expect(page.get_by_text("gated at m = 0.2")).to_be_visible()
    expect(page.get_by_test_id("gating-step")).to_contain_text("This step at m = 0.2: temperature 0.64")
    expect(page.get_by_label("Temperature value")).to_be_disabled()
    expect(page.get_by_test_id("wheel-text")).to_have_text(text)
    spin(page, 4)
    expect(chosen(page)).to_have_count(2)
    expect(chosen(page).nth(1)).to_have_attribute("title", re.compile(r"m = 0\.2"))


def test_bad_input_shows_an_error_and_changes_nothing(page: Page) -> None:
    start(page)
    spin(page, 1)
    expect(chosen(page)).to_have_count(1)
    text = page.get_by_test_id("wheel-text").inner_text()

    page.get_by_role("textbox", name="Prompt").fill("")
    page.get_by_role("button", name="Start over").click()
    expect(page.get_by_role("alert")).to_contain_text("prompt must not be empty")
    expect(page.get_by_test_id("wheel-text")).to_have_text(text)
    expect(chosen(page)).to_have_count(1)

    spin(page, -1)
    expect(page.get_by_role("alert")).to_contain_text("seed")
    expect(page.get_by_test_id("wheel-text")).to_have_text(text)
    expect(chosen(page)).to_have_count(1)

    # and it recovers: a good seed spins again
    spin(page, 2)
    expect(chosen(page)).to_have_count(2)
    expect(page.get_by_role("alert")).to_have_count(0)


def test_fits_a_phone(page: Page, shoot: Callable[[Page, str], Path]) -> None:
    page.set_viewport_size(PHONE)
    start(page)
    spin(page, 5)
    expect(chosen(page)).to_have_count(1)
    ready(page)
    box = page.get_by_test_id("wheel").bounding_box()
    assert box is not None and box["width"] <= PHONE["width"]
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the wheel page scrolls sideways on a phone ({width}px)"
    shoot(page, "phone")


def test_raw_byte_tokens_are_shown_as_bytes(page: Page) -> None:
    start(page)
    # at threshold 0 every token has a wedge, the byte-level ones (not UTF-8 on their own) among them
    page.get_by_label("Threshold value").fill("0")
    expect(page.get_by_role("heading", name=re.compile(r"^Tokens at or above 0%"))).to_be_visible()
    ready(page)
    byte_token = page.get_by_role("button", name=re.compile(r"^Pick raw bytes 0x[0-9A-F]{2}, "))
    expect(byte_token.first).to_be_visible()
    expect(byte_token.first).to_contain_text(re.compile(r"⟨0x[0-9A-F]{2}⟩"))
    byte_token.first.click()
    expect(chosen(page)).to_have_count(1)
    expect(chosen(page).first).to_have_text(re.compile(r"^⟨0x[0-9A-F]{2}⟩$"))
    expect(page.get_by_text("Decoded together:")).to_be_visible()
