"""The learner explorer (`#/learners`) in a real browser against the whole local stack: register a learner,
add events and see its history (tasks x outcomes, in words and colour), predict tasks (probability bars),
forecast candidate sequences (expected and sampled-feedback curves drawn) and search a curriculum (best
sequence and the fitness per generation drawn); pick a learner from the list after a reload; errors for an
unknown learner, a taken id, an empty candidate sequence and a search without targets; laptop and phone
(390 px, no sideways scroll) screenshots."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from fixtures.browser import PHONE
from playwright.sync_api import Locator, Page, expect

Shoot = Callable[[Page, str], Path]


def open_learner(page: Page, learner_id: str, events: list[tuple[str, float]] | None = None) -> None:
    """Registers the learner through the API (with a prior history), then opens its page."""
    history = [{"task": task, "outcome": outcome} for task, outcome in events or []]
    response = page.request.post("/v1/learners", data={"learner_id": learner_id, "history": history})
    assert response.status == 201, response.text()
    page.goto(f"/ui/#/learners/{learner_id}")
    expect(page.get_by_role("heading", name=f"Learner {learner_id}")).to_be_visible()
    expect(page.get_by_test_id("history-len")).to_have_text(str(len(history)))


def add_event(page: Page, task: str, outcome: str, expected_len: int) -> None:
    form = page.get_by_role("region", name="Add an event")
    form.get_by_label("Task", exact=True).select_option(task)
    form.get_by_label(outcome).check()
    form.get_by_role("button", name="Add event", exact=True).click()
    expect(page.get_by_test_id("history-len")).to_have_text(str(expected_len))


def build_sequence(page: Page, name: str, tasks: list[str]) -> None:
    sequence = page.get_by_role("group", name=f"Sequence {name}")
    for task in tasks:
        sequence.get_by_label(f"Task for sequence {name}").select_option(task)
        sequence.get_by_role("button", name=f"Add step to {name}", exact=True).click()
    expect(
        sequence.get_by_role("list", name=f"Steps of sequence {name}").get_by_role("listitem")
    ).to_have_count(len(tasks))


def points(chart: Locator) -> int:
    expect(chart).to_be_visible()
    return int(chart.get_attribute("data-points") or 0)


def test_register_add_events_predict_forecast_and_search(page: Page, shoot: Shoot) -> None:
    page.goto("/ui/#/learners")
    expect(page.get_by_role("heading", level=1, name="Learners")).to_be_visible()
    page.get_by_label("New learner id").fill("ui-ada")
    page.get_by_role("button", name="Register", exact=True).click()
    expect(page).to_have_url(re.compile(r"#/learners/ui-ada$"))
    expect(page.get_by_role("heading", name="Learner ui-ada")).to_be_visible()
    expect(page.get_by_text("No events yet")).to_be_visible()
    # The new learner is in the list, marked as the one shown.
    expect(
        page.get_by_role("list", name="Learners").get_by_role("link", name=re.compile("ui-ada"))
    ).to_have_attribute("aria-current", "page")

    add_event(page, "t01", "Correct (1)", 1)
    expect(page.get_by_role("status").filter(has_text="Added t01: correct")).to_contain_text("%")
    add_event(page, "t02", "Incorrect (0)", 2)
    add_event(page, "t01", "Correct (1)", 3)

    # The history: a strip of events in order, in words and colour, and the tasks x outcomes table.
    strip = page.get_by_role("list", name="Events in order").get_by_role("listitem")
    expect(strip).to_have_count(3)
    expect(strip.nth(0)).to_contain_text("t01")
    expect(strip.nth(0)).to_contain_text("correct")
    expect(strip.nth(0)).to_have_class(re.compile(r"\bcorrect\b"))
    expect(strip.nth(1)).to_contain_text("t02")
    expect(strip.nth(1)).to_contain_text("incorrect")
    expect(strip.nth(1)).to_have_class(re.compile(r"\bincorrect\b"))
    assert strip.nth(0).evaluate("e => getComputedStyle(e).borderColor") != strip.nth(1).evaluate(
        "e => getComputedStyle(e).borderColor"
    )
    table = page.get_by_role("table", name="Outcomes per task")
    expect(table.get_by_role("row", name=re.compile(r"^t01 2 2 0"))).to_be_visible()
    expect(table.get_by_role("row", name=re.compile(r"^t02 1 0 1"))).to_be_visible()
    expect(
        page.get_by_role("list", name="Learners").get_by_role("link", name=re.compile("ui-ada"))
    ).to_contain_text("3 events")

    # Predictions for chosen tasks, as bars with their percentages.
    chooser = page.get_by_role("group", name="Tasks to predict")
    chooser.get_by_role("checkbox", name="t01").check()
    chooser.get_by_role("checkbox", name="t03").check()
    page.get_by_role("button", name="Predict", exact=True).click()
    bars = page.get_by_role("list", name="Predicted P(correct)").get_by_role("listitem")
    expect(bars).to_have_count(2)
    expect(bars.nth(0)).to_contain_text(re.compile(r"t01\s*\d+\.\d%"))
    expect(bars.nth(1)).to_contain_text(re.compile(r"t03\s*\d+\.\d%"))
    expect(page.get_by_text("Given 3 events")).to_be_visible()

    # Forecast two candidate sequences: expected and sampled-feedback curves are drawn.
    build_sequence(page, "A", ["t01", "t02", "t03"])
    page.get_by_role("button", name="Add sequence", exact=True).click()
    build_sequence(page, "B", ["t03", "t02", "t01"])
    page.get_by_label("Sampled runs per sequence").fill("2")
    page.get_by_role("button", name="Forecast", exact=True).click()
    expected = page.get_by_test_id("forecast-expected")
    assert points(expected) == 6  # 2 sequences x 3 steps
    expect(expected.get_by_role("img")).to_have_attribute("aria-label", re.compile(r"A expected: 3 points"))
    assert points(page.get_by_test_id("forecast-sampled")) == 12  # 2 runs of each
    expect(page.get_by_role("row", name=re.compile(r"^A t01 → t02 → t03 \d+\.\d% \d+\.\d%"))).to_be_visible()

    # Curriculum search: the best curriculum and the fitness per generation.
    page.get_by_role("group", name="Target tasks").get_by_role("checkbox", name="t05").check()
    page.get_by_label("Depth (tasks)").fill("3")
    page.get_by_label("Population").fill("8")
    page.get_by_label("Generations").fill("4")
    page.get_by_role("button", name="Search", exact=True).click()
    best = page.get_by_role("list", name="Best curriculum").get_by_role("listitem")
    expect(best).to_have_count(3)
    expect(page.get_by_test_id("best-fitness")).to_have_text(re.compile(r"\d+\.\d%"))
    assert points(page.get_by_test_id("curriculum-fitness")) == 10  # 2 curves x (4 + 1) generations
    # The searched curriculum can become a forecast candidate.
    page.get_by_role("button", name="Forecast this curriculum", exact=True).click()
    expect(
        page.get_by_role("group", name="Sequence C")
        .get_by_role("list", name="Steps of sequence C")
        .get_by_role("listitem")
    ).to_have_count(3)
    shoot(page, "laptop")


def test_pick_a_learner_from_the_list_after_a_reload(page: Page) -> None:
    open_learner(page, "ui-bo", [("t04", 1.0), ("t05", 0.0)])
    page.goto("/ui/#/learners")
    page.reload()
    expect(page.get_by_role("heading", name="No learner chosen")).to_be_visible()

    page.get_by_label("Filter by id, or open an id").fill("ui-b")
    learners = page.get_by_role("list", name="Learners").get_by_role("link")
    expect(learners).to_have_count(1)
    expect(learners.first).to_contain_text("2 events")
    learners.first.click()

    expect(page.get_by_role("heading", name="Learner ui-bo")).to_be_visible()
    expect(page.get_by_test_id("history-len")).to_have_text("2")
    expect(page.get_by_role("list", name="Events in order").get_by_role("listitem")).to_have_count(2)
    page.get_by_label("Filter by id, or open an id").fill("nobody-starts-so")
    expect(page.get_by_text("No learner id starts with “nobody-starts-so”")).to_be_visible()
    page.get_by_label("Filter by id, or open an id").fill("no spaces")
    expect(page.get_by_text("ids hold only letters, digits")).to_be_visible()


def test_invalid_inputs_show_errors(page: Page, shoot: Shoot) -> None:
    page.goto("/ui/#/learners")
    page.get_by_label("Filter by id, or open an id").fill("ui-nobody")
    page.get_by_role("button", name="Open", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text("learner 'ui-nobody' not found")

    open_learner(page, "ui-cy", [("t01", 1.0)])
    page.get_by_label("New learner id").fill("ui-cy")
    page.get_by_role("button", name="Register", exact=True).click()
    expect(page.get_by_role("alert").filter(has_text="Registering")).to_contain_text("already exists")

    # An empty candidate sequence: the API refuses the forecast, naming the field.
    build_sequence(page, "A", ["t01", "t02"])
    page.get_by_role("button", name="Add sequence", exact=True).click()
    page.get_by_role("button", name="Forecast", exact=True).click()
    expect(page.get_by_role("alert").filter(has_text="Forecasting")).to_contain_text("at least one task")
    expect(page.get_by_test_id("forecast-expected")).to_have_count(0)

    # A search with no target task: refused, naming the field.
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.get_by_role("alert").filter(has_text="Searching")).to_contain_text("target_tasks")
    shoot(page, "errors")


def test_fits_a_phone(page: Page, shoot: Shoot) -> None:
    page.set_viewport_size(PHONE)
    open_learner(page, "ui-di", [("t01", 1.0), ("t02", 0.0), ("t03", 1.0), ("t04", 0.5)])
    build_sequence(page, "A", ["t05", "t06", "t07", "t08"])
    page.get_by_role("button", name="Forecast", exact=True).click()
    assert points(page.get_by_test_id("forecast-expected")) == 4
    page.get_by_role("group", name="Target tasks").get_by_role("checkbox", name="t09").check()
    page.get_by_label("Generations").fill("2")
    page.get_by_role("button", name="Search", exact=True).click()
    assert points(page.get_by_test_id("curriculum-fitness")) == 6

    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the learner page scrolls sideways on a phone ({width}px)"
    shoot(page, "phone")
