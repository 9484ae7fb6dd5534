"""The chat page in a real browser against the whole stack: an adapter's answer streams in token by token and
carries its completion id; feedback on it becomes a feedback item whose SDPO job appears (and exists in the
jobs API); base vs adapter side by side gives two answers; the errors (an empty message, feedback on a base
model's answer) are shown; and the page fits a laptop and a phone."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import httpx
from fixtures.browser import PHONE
from playwright.sync_api import Locator, Page, expect

ADAPTER = "lm-demo-tutor"
BASE = "lm-demo@production"
SEED = "7"
# Records the text length of the conversation's last answer on every change of the page, to see it grow.
OBSERVE_ANSWER = """() => {
  window.__answerLengths = [];
  new MutationObserver(() => {
    const answers = document.querySelectorAll('.chat-log [data-testid="answer-text"]');
    const last = answers[answers.length - 1];
    if (last) window.__answerLengths.push(last.textContent.length);
  }).observe(document.body, { subtree: true, childList: true, characterData: true });
}"""


def open_chat(page: Page, model: str, max_tokens: int = 40) -> None:
    page.goto("/ui/#/chat")
    expect(page.get_by_role("heading", level=1, name="Chat")).to_be_visible()
    page.get_by_label("Model", exact=True).select_option(model)
    page.get_by_label("Max tokens value").fill(str(max_tokens))
    page.get_by_label("Seed", exact=True).fill(SEED)


def ask(page: Page, message: str, number: int, model: str) -> Locator:
    """Sends `message` and waits for the answer (number `number`) to end with its completion id."""
    page.get_by_label("Your message").fill(message)
    page.get_by_role("button", name="Send", exact=True).click()
    answer = page.get_by_role("article", name=f"answer {number} from {model}")
    completion_id = answer.get_by_test_id("completion-id")
    expect(completion_id).to_have_text(re.compile(r"^cmpl-[0-9a-f]+$"), timeout=90_000)
    return answer


def test_compare_base_and_adapter_side_by_side(page: Page) -> None:
    open_chat(page, ADAPTER)
    page.get_by_label("Adapter to compare").select_option(ADAPTER)
    page.get_by_label("Prompt to compare").fill("Tell me about the cat.")
    page.get_by_role("button", name="Compare", exact=True).click()
    base = page.get_by_test_id("compare-base")
    adapter = page.get_by_test_id("compare-adapter")
    expect(base.get_by_role("heading")).to_have_text(f"Base: {BASE}")
    expect(adapter.get_by_role("heading")).to_have_text(f"Adapter: {ADAPTER}")
    for column in (base, adapter):
        expect(column.get_by_test_id("completion-id")).to_have_text(re.compile(r"^cmpl-"), timeout=90_000)
        expect(column.get_by_test_id("answer-text")).not_to_be_empty()
    assert (
        base.get_by_test_id("completion-id").text_content()
        != adapter.get_by_test_id("completion-id").text_content()
    )


def test_errors_are_shown(page: Page) -> None:
    open_chat(page, BASE, max_tokens=16)
    page.get_by_role("button", name="Send", exact=True).click()  # nothing typed
    expect(page.get_by_role("alert")).to_contain_text("empty message")
    answer = ask(page, "Hello there.", 1, BASE)
    answer.get_by_label("Feedback on answer 1").fill("Be kinder.")
    answer.get_by_role("button", name="Send feedback").click()
    # the API's own 400: a base model's completion has no adapter to learn from it
    expect(answer.get_by_role("alert")).to_contain_text("without an adapter")


def test_answer_streams_and_feedback_starts_a_job(page: Page, ui_url: str, shoot: Callable) -> None:
    open_chat(page, ADAPTER, max_tokens=16)
    expect(page.get_by_test_id("adapter-versions")).to_contain_text("v1")
    page.evaluate(OBSERVE_ANSWER)
    answer = ask(page, "What is a fraction?", 1, ADAPTER)
    lengths: list[int] = page.evaluate("window.__answerLengths")
    grown = sorted({n for n in lengths if n > 0})
    assert len(grown) > 1, f"the answer did not stream in (text lengths seen: {lengths})"
    assert len(answer.get_by_test_id("answer-text").text_content() or "") == max(grown)

    answer.get_by_label("Feedback on answer 1").fill("Be brief.")
    answer.get_by_role("button", name="Send feedback").click()
    item = answer.get_by_test_id("feedback-item")
    expect(item).to_have_attribute("data-state", re.compile(r"^(pending|training)$"))
    expect(item).to_contain_text(ADAPTER)
    job_link = item.get_by_role("link", name=re.compile(r"^[0-9a-f]{16,}$"))
    train_now = item.get_by_role("button", name="Train now")
    if train_now.is_visible():  # pending until a batch fills: start its job now
        train_now.click()
    expect(job_link).to_be_visible(timeout=60_000)
    expect(item).to_have_attribute("data-state", re.compile(r"^(training|applied|failed)$"))
    job_id = job_link.text_content() or ""
    assert job_link.get_attribute("href") == f"#/training/jobs/{job_id}"
    jobs = httpx.get(f"{ui_url}/v1/jobs", params={"kind": "sdpo"}, timeout=30).json()["jobs"]
    assert job_id in {job["job_id"] for job in jobs}
    shoot(page, "laptop")


def test_fits_a_phone(page: Page, shoot: Callable[[Page, str], Path]) -> None:
    page.set_viewport_size(PHONE)
    open_chat(page, ADAPTER, max_tokens=24)
    ask(page, "Once upon a time there was a very long word: supercalifragilisticexpialidocious.", 1, ADAPTER)
    page.get_by_label("Prompt to compare").fill("Tell me a story.")
    page.get_by_role("button", name="Compare", exact=True).click()
    for column in ("compare-base", "compare-adapter"):
        expect(page.get_by_test_id(column).get_by_test_id("completion-id")).to_be_visible(timeout=90_000)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the chat page scrolls sideways on a phone ({width}px)"
    shoot(page, "phone")
