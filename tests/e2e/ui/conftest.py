"""The web UI in a real browser: Debian's Chromium driven by Playwright (headless, no sandbox), against the
whole local stack (one per test process, shared by the modules) serving the built UI at /ui. Each test's
pages fail it on any uncaught script error; screenshots go to $LYCEUM_UI_ARTIFACTS (default artifacts/ui/ at
the repository root), named <module>-<name>.png."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fixtures.browser import CHROMIUM, CHROMIUM_ARGS, LAPTOP, UI_BUILD
from fixtures.stack import ROOT, local_stack
from fleet import wait_until
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from lyceum_db import TERMINAL

ARTIFACTS = Path(os.environ.get("LYCEUM_UI_ARTIFACTS") or ROOT / "artifacts" / "ui")

pytestmark = [pytest.mark.e2e]


@pytest.fixture(scope="session")
def ui_stack(
    tmp_path_factory: pytest.TempPathFactory,
    test_checkpoint: Path,
    tiny_lyceum_lm_dir: Path,
    smollm2_dir: Path,
) -> Iterator[str]:
    """One stack per test process for every UI module (a start costs 25-60 s of a busy CPU); the modules keep
    out of each other's way: their own learners, model names and job kinds, and `ui_url` settles jobs."""
    if not UI_BUILD.is_file():
        pytest.fail(f"the web UI is not built ({UI_BUILD} is missing): run `make web` (Node.js and npm)")
    state = tmp_path_factory.mktemp("ui-stack") / "var"
    with local_stack(state, test_checkpoint, tiny_lyceum_lm_dir, smollm2_dir) as url:
        yield url


@pytest.fixture(scope="module")
def ui_url(ui_stack: str) -> Iterator[str]:
    """The gateway's base URL, with the stack behind it; after the module, every job it left unfinished is
    cancelled and has stopped, so the next module's jobs neither queue behind it nor share the CPU with it."""
    yield ui_stack
    with httpx.Client(base_url=ui_stack, timeout=30) as http:
        jobs = http.get("/v1/jobs", params={"limit": 200}).json()["jobs"]
        unfinished = [job["job_id"] for job in jobs if job["state"] not in TERMINAL]
        for job_id in unfinished:
            http.post(f"/v1/jobs/{job_id}/cancel")  # 409 if it finished meanwhile
        wait_until(lambda: all(finished(http, job_id) for job_id in unfinished), 120, what="jobs cancelled")


def finished(http: httpx.Client, job_id: str) -> bool:
    return http.get(f"/v1/jobs/{job_id}").json()["state"] in TERMINAL


# Module-scoped: Playwright's sync API keeps an event loop running in this thread while it is open, and the
# test files a worker runs next may call asyncio.run().
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install chromium (or set LYCEUM_CHROMIUM)")
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture
def page(browser: Browser, ui_url: str) -> Iterator[Page]:
    """A fresh browser context (no stored key) at laptop size; fails the test on an uncaught page error."""
    context = browser.new_context(viewport=LAPTOP, base_url=ui_url)
    context.set_default_timeout(30_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.fixture
def shoot(request: pytest.FixtureRequest) -> Callable[[Page, str], Path]:
    """Saves a full-page screenshot as an artifact and returns its path."""
    module = re.sub(r"^test_", "", Path(str(request.node.fspath)).stem)

    def save(page: Page, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{module}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return save
