"""The app shell: /ui loads from the gateway, every section is reachable by keyboard-usable links, the API key
is kept once entered and sent with calls, and the layout fits a phone."""

from __future__ import annotations

from fixtures.browser import PHONE
from playwright.sync_api import Page, expect

SECTIONS = ["Token wheel", "Learners", "Training", "Chat", "Gating"]


def test_ui_is_served_and_every_section_opens(page: Page, shoot) -> None:
    page.goto("/ui")
    nav = page.get_by_role("navigation", name="Sections")
    for name in SECTIONS:
        nav.get_by_role("link", name=name).click()
        expect(nav.get_by_role("link", name=name)).to_have_attribute("aria-current", "page")
        expect(page.get_by_role("heading", level=1)).to_be_visible()
    shoot(page, "shell")


def test_api_key_is_kept_and_sent(page: Page) -> None:
    page.goto("/ui/")
    page.get_by_label("API key").fill("lyk-example")
    page.get_by_role("button", name="Save key").click()
    page.wait_for_load_state()
    with page.expect_request(lambda r: "/v1/" in r.url) as sent:
        page.get_by_role("navigation", name="Sections").get_by_role("link", name="Learners").click()
    assert sent.value.headers.get("authorization") == "Bearer lyk-example"


def test_fits_a_phone(page: Page, shoot) -> None:
    page.set_viewport_size(PHONE)
    page.goto("/ui/")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page scrolls sideways on a phone ({width}px)"
    shoot(page, "phone")
