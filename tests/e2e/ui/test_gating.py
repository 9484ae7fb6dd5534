"""The gating page in a real browser against the whole stack: a generation under a fixed modulation shows its
text and, under it, the modulation trajectory drawn with one point per generated token (each at that m, the
tokens in a table); random modulation with a seed gives the same text twice; and the page fits a laptop and a
phone."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fixtures.browser import PHONE
from playwright.sync_api import Page, expect

MODEL = "lm-demo@production"


def generate(page: Page, mode: str, run: int, seed: int = 7, max_tokens: int = 24) -> str:
    """Generates under `mode` and returns the text once the result of run `run` is shown."""
    page.get_by_role("radio", name=mode).check()
    page.get_by_label("Max tokens value").fill(str(max_tokens))
    page.get_by_label("Seed", exact=True).fill(str(seed))
    page.get_by_role("button", name="Generate").click()
    result = page.get_by_test_id("gating-result")
    expect(result).to_have_attribute("data-run", str(run), timeout=90_000)
    return result.get_by_test_id("generated-text").text_content() or ""


def open_gating(page: Page) -> None:
    page.goto("/ui/#/gating")
    expect(page.get_by_role("heading", level=1, name="Gating")).to_be_visible()
    page.get_by_label("Model", exact=True).select_option(MODEL)
    page.get_by_label("Prompt", exact=True).fill("Once upon a time")


def test_fixed_modulation_draws_the_trajectory(page: Page, shoot: Callable[[Page, str], Path]) -> None:
    open_gating(page)
    page.get_by_role("radio", name="Fixed").check()
    page.get_by_label("Modulation value").fill("0.3")
    text = generate(page, "Fixed", 1)
    assert text
    tokens = int(page.get_by_test_id("tokens-generated").text_content() or "0")
    assert tokens >= 1
    chart = page.get_by_test_id("trajectory-chart")
    expect(chart).to_have_attribute("data-points", str(tokens))
    expect(chart.locator("canvas")).to_be_visible()
    summary = f"Modulation m per generated token. m: {tokens} points, last 0.3000"
    expect(chart.get_by_role("img")).to_have_attribute("aria-label", summary)
    steps = page.get_by_test_id("trajectory-table").get_by_test_id("step-m")
    expect(steps).to_have_count(tokens)
    assert set(steps.all_text_contents()) == {"0.300"}
    shoot(page, "laptop")


def test_random_modulation_with_a_seed_is_deterministic(page: Page) -> None:
    open_gating(page)
    first = generate(page, "Random", 1, seed=11)
    m_first = page.get_by_test_id("step-m").all_text_contents()
    second = generate(page, "Random", 2, seed=11)
    assert first and second == first
    assert page.get_by_test_id("step-m").all_text_contents() == m_first
    assert len(set(m_first)) > 1, "random modulation drew one m for every token"


def test_fits_a_phone(page: Page, shoot: Callable[[Page, str], Path]) -> None:
    page.set_viewport_size(PHONE)
    open_gating(page)
    generate(page, "Random", 1, seed=3, max_tokens=32)
    expect(page.get_by_test_id("trajectory-chart").locator("canvas")).to_be_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the gating page scrolls sideways on a phone ({width}px)"
    shoot(page, "phone")
