"""The Training section in a real browser against the whole local stack (one training worker, jobs run for
real): a config the API refuses names its field and creates no job; a long job is cancelled, resumed and
cancelled again from its page; a short DFM job submitted from the form draws its loss curve live (the chart
gains points while the job runs) and succeeds, and its model shows in the registry; an alias is moved to that
version and rolled back with confirmation; the pages fit a phone.

The tests share the module's stack and its one worker, in file order: each leaves no job running."""

from __future__ import annotations

import json
import re
from typing import Any

from fixtures.browser import PHONE
from fixtures.data import require_shared
from playwright.sync_api import Page, Route, expect

JOB_URL = re.compile(r"#/training/jobs/([0-9a-f]+)$")
RUN_S = 240_000  # ms: a job on a busy CPU, with the worker's polling


def dfm_config(steps: int, log_every: int) -> dict[str, Any]:
    """A tiny DFM on simulated learners (tests/e2e/test_training_flow.py's): trains in seconds on a CPU."""
    return {
        "dataset": {"format": "simulated", "n_learners": 150, "seed": 3},
        "model": {"d_model": 16, "n_layer": 1, "n_head": 2, "n_kv_head": 1, "max_len": 256},
        "train": {"steps": steps, "batch_size": 8, "window": 60, "warmup_steps": 2},
        "run": {"checkpoint_every": 5, "log_every": log_every},
        "register_as": "dfm-demo",
    }


def submit(page: Page, config: dict[str, Any], kind: str = "dfm_pretrain") -> None:
    """Fills the new-job form (the kind, the cpu queue, the config) and submits it."""
    page.goto("/ui/#/training/new")
    expect(page.get_by_role("heading", level=1, name="New training job")).to_be_visible()
    page.get_by_label("Kind").select_option(kind)
    page.get_by_label("Queue").select_option("cpu")
    page.get_by_label("Config (JSON)").fill(json.dumps(config, indent=2))
    page.get_by_role("button", name="Submit job").click()


def submitted_job(page: Page, config: dict[str, Any], kind: str = "dfm_pretrain") -> str:
    """Submits a job from the form and returns its id once its page opened."""
    submit(page, config, kind)
    expect(page).to_have_url(JOB_URL)
    match = JOB_URL.search(page.url)
    assert match
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Job {match.group(1)[:12]}")
    return match.group(1)


def job_count(page: Page) -> int:
    response = page.request.get("/v1/jobs", params={"limit": 200})
    assert response.ok, response.text()
    return len(response.json()["jobs"])


def no_sideways_scroll(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{page.url} scrolls sideways on a phone ({width}px)"


def test_an_invalid_config_names_its_field_and_creates_no_job(page: Page, shoot) -> None:
    before = job_count(page)
    config = dfm_config(steps=10, log_every=5)
    config["train"]["steps"] = 0  # must be >= 1
    submit(page, config)
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("config.train.steps")
    expect(alert).to_contain_text("422")
    expect(page.get_by_test_id("error-field")).to_have_text("config.train.steps")
    expect(page.get_by_label("Config (JSON)")).to_have_attribute("aria-invalid", "true")
    shoot(page, "new-job-error")
    # text that is not JSON is refused before any request
    page.get_by_label("Config (JSON)").fill('{"dataset": ')
    page.get_by_role("button", name="Submit job").click()
    expect(page.get_by_role("alert")).to_contain_text("not valid JSON")
    assert page.url.endswith("#/training/new")
    assert job_count(page) == before


def test_cancel_and_resume_a_running_job(page: Page, shoot) -> None:
    job_id = submitted_job(page, dfm_config(steps=1_000_000, log_every=5))
    state = page.get_by_test_id("job-state")
    cancel = page.get_by_role("button", name="Cancel job")
    resume = page.get_by_role("button", name="Resume job")
    expect(state).to_have_text("running", timeout=RUN_S)
    expect(resume).to_be_disabled()
    expect(page.get_by_test_id("chart-loss")).to_have_attribute("data-points", re.compile(r"^[1-9]\d*$"))
    expect(page.get_by_test_id("job-eta")).to_have_text(re.compile(r"^\d+:\d\d(:\d\d)?$"))  # progress + time
    expect(page.get_by_test_id("stream-state")).to_have_text("live")
    shoot(page, "job-running")
    cancel.click()
    expect(state).to_have_text("cancelled", timeout=RUN_S)
    expect(cancel).to_be_disabled()
    expect(resume).to_be_enabled()

    resume.click()
    expect(state).to_have_text(re.compile(r"^(queued|running)$"))
    expect(state).to_have_text("running", timeout=RUN_S)
    expect(page.get_by_test_id("stream-state")).to_have_text("live")
    cancel.click()
    expect(state).to_have_text("cancelled", timeout=RUN_S)
    job = page.request.get(f"/v1/jobs/{job_id}").json()
    assert job["state"] == "cancelled" and job["attempt"] == 2

    page.goto("/ui/#/training")
    row = page.locator(f'tr[data-job-id="{job_id}"]')
    expect(row.get_by_test_id("job-state")).to_have_text("cancelled")


# Records, in the page, every value the loss chart's data-points takes together with the job's state at that
# moment (one DOM snapshot each), so that "the curve grew while the job ran" is checked without racing it.
RECORD_POINTS = """() => {
  window.__curve = [];
  const snap = () => {
    const chart = document.querySelector('[data-testid="chart-loss"]');
    const state = document.querySelector('[data-testid="job-state"]');
    if (chart && state) {
      const entry = [Number(chart.dataset.points), state.textContent];
      const last = window.__curve[window.__curve.length - 1];
      if (!last || last[0] !== entry[0] || last[1] !== entry[1]) window.__curve.push(entry);
    }
  };
  snap();
  new MutationObserver(snap).observe(document.body, {subtree: true, childList: true, characterData: true,
    attributes: true, attributeFilter: ["data-points"]});
}"""


def test_a_short_job_draws_its_curve_live_and_lands_in_the_registry(page: Page, shoot) -> None:
    before = page.request.get("/v1/models/dfm-demo").json()
    # ~15 s of training on this CPU, logged every 5 steps: the stream (polled each second) delivers many
    # updates while the job runs, whatever the machine's load (80 steps once ran in 2 s, one update)
    job_id = submitted_job(page, dfm_config(steps=600, log_every=5))
    page.evaluate(RECORD_POINTS)
    state = page.get_by_test_id("job-state")
    expect(state).to_have_text("succeeded", timeout=RUN_S)
    curve = page.evaluate("window.__curve")
    running = [points for points, s in curve if s == "running" and points > 0]
    assert len(set(running)) >= 2 and running == sorted(running), f"no live growth while running: {curve}"
    final = int(page.get_by_test_id("chart-loss").get_attribute("data-points") or 0)
    assert final >= 120 > running[0], curve  # every logged loss, and the first draw came mid-run
    # its DKT teacher's 600 steps first: the progress names the phase, and whose loss it shows
    expect(page.get_by_test_id("job-step")).to_have_text("Step 1,200 / 1,200 (student)")
    expect(page.get_by_text("Loss (student)", exact=True)).to_be_visible()
    expect(page.get_by_test_id("stream-state")).to_contain_text("ended")
    # the teacher's curve and the DFM's, each under its own name
    expect(page.get_by_test_id("chart-loss").get_by_role("img")).to_have_attribute(
        "aria-label", re.compile(r"^Loss\. teacher_loss: \d+ points, last [\d.]+; loss: \d+ points")
    )
    shoot(page, "job")

    # the model it produced, linked from the job, is the registry's newest dfm-demo version
    version = before["versions"][-1]["version"] + 1
    page.get_by_role("link", name=f"dfm-demo v{version}").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Model dfm-demo")
    row = page.locator(f'tr[data-version="{version}"]')
    expect(row).to_contain_text("latest")
    expect(row).to_contain_text("auc")
    expect(row.get_by_role("link", name=job_id[:8])).to_be_visible()

    page.goto("/ui/#/training")
    expect(page.locator(f'tr[data-job-id="{job_id}"]').get_by_test_id("job-state")).to_have_text("succeeded")
    expect(page.locator(f'tr[data-job-id="{job_id}"]')).to_contain_text(f"dfm-demo v{version}")
    shoot(page, "jobs")


def test_a_dropped_stream_reconnects_with_last_event_id(page: Page) -> None:
    jobs = page.request.get("/v1/jobs", params={"state": "succeeded", "kind": "dfm_pretrain"}).json()["jobs"]
    job = jobs[0]
    reported = page.request.get(f"/v1/jobs/{job['job_id']}/metrics").json()["points"]
    total = len({p["step"] for p in reported if "loss" in p["values"]})  # the steps with a loss
    # The first stream ends after one point (step 3) without the job's `end`: the page reopens it with
    # Last-Event-ID and gets the rest from the server.
    seen: list[str | None] = []

    def events(route: Route) -> None:
        seen.append(route.request.headers.get("last-event-id"))
        if len(seen) == 1:
            point = {"step": 3, "values": {"loss": 0.5}, "time": "2026-01-01T00:00:00Z"}
            body = f"retry: 2000\n\nevent: metrics\nid: 3\ndata: {json.dumps(point)}\n\n"
            route.fulfill(status=200, headers={"content-type": "text/event-stream"}, body=body)
        else:
            route.continue_()

    page.route(re.compile(rf"/v1/jobs/{job['job_id']}/events"), events)
    page.goto(f"/ui/#/training/jobs/{job['job_id']}")
    expect(page.get_by_test_id("stream-state")).to_contain_text("ended", timeout=RUN_S)
    assert seen[:2] == [None, "2"], seen  # the step before the last seen: a step may report twice
    points = int(page.get_by_test_id("chart-loss").get_attribute("data-points") or 0)
    assert points >= total, (points, total)  # every logged loss, the one from the cut stream merged in


def test_move_an_alias_and_roll_it_back(page: Page, shoot) -> None:
    model = page.request.get("/v1/models/dfm-demo").json()
    production = model["aliases"]["production"]
    target = next(v["version"] for v in reversed(model["versions"]) if v["version"] != production)

    page.goto("/ui/#/training/models")
    expect(page.get_by_role("heading", level=1, name="Model registry")).to_be_visible()
    listed = page.locator('tr[data-model="dfm-demo"]')
    expect(listed).to_contain_text(f"production → v{production}")
    shoot(page, "registry")
    listed.get_by_role("link", name="dfm-demo").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Model dfm-demo")
    alias = page.get_by_test_id("alias-production")
    expect(alias).to_have_text(f"v{production}")

    page.get_by_label("Alias", exact=True).fill("production")
    page.get_by_label("Version", exact=True).select_option(str(target))
    page.get_by_role("button", name="Move alias").click()
    dialog = page.get_by_role("dialog", name="Move the alias?")
    expect(dialog).to_contain_text(f"v{target}")
    dialog.get_by_role("button", name="Cancel").click()  # backing out changes nothing
    expect(dialog).to_be_hidden()
    expect(alias).to_have_text(f"v{production}")
    page.get_by_role("button", name="Move alias").click()
    dialog.get_by_role("button", name="Move").click()
    expect(page.get_by_test_id("alias-outcome")).to_have_text(
        f"Moved: production now points at v{target} (was v{production})."
    )
    expect(alias).to_have_text(f"v{target}")
    assert page.request.get("/v1/models/dfm-demo").json()["aliases"]["production"] == target
    shoot(page, "model")

    page.get_by_role("button", name="Roll back production").click()
    page.get_by_role("dialog", name="Roll back the alias?").get_by_role("button", name="Roll back").click()
    expect(page.get_by_test_id("alias-outcome")).to_have_text(
        f"Rolled back: production now points at v{production} (was v{target})."
    )
    expect(alias).to_have_text(f"v{production}")
    assert page.request.get("/v1/models/dfm-demo").json()["aliases"]["production"] == production


def test_training_pages_fit_a_phone(page: Page, shoot) -> None:
    jobs = page.request.get("/v1/jobs", params={"state": "succeeded", "kind": "dfm_pretrain"}).json()["jobs"]
    assert jobs, "the short job of the test before should have succeeded"
    page.set_viewport_size(PHONE)
    page.goto("/ui/#/training")
    expect(page.get_by_role("table", name="Jobs")).to_be_visible()
    no_sideways_scroll(page)
    shoot(page, "jobs-phone")
    page.goto(f"/ui/#/training/jobs/{jobs[0]['job_id']}")
    expect(page.get_by_test_id("chart-loss")).to_have_attribute("data-points", re.compile(r"^[1-9]\d*$"))
    no_sideways_scroll(page)
    shoot(page, "job-phone")
    page.goto("/ui/#/training/models/dfm-demo")
    expect(page.get_by_role("table", name="Versions")).to_be_visible()
    no_sideways_scroll(page)
    shoot(page, "model-phone")
    page.goto("/ui/#/training/new")
    expect(page.get_by_label("Config (JSON)")).to_be_visible()
    no_sideways_scroll(page)


def test_a_gating_jobs_ablation_and_an_evaluations_plots(page: Page, shoot) -> None:
    prompts = require_shared("tinystories", "tinystories_sample.txt")
    gating = {
        "lm": "lm-demo@production",
        "prompts": str(prompts),
        "iterations": 3,
        "envs": 2,
        "episode_length": 6,
        "ppo": {"minibatch": 8, "epochs": 1},
        "ablation": {"episodes": 2, "seeds": [0, 1]},
        "register_as": "gating-ui",
    }
    submitted_job(page, gating, kind="gating_ppo")
    expect(page.get_by_test_id("job-state")).to_have_text("succeeded", timeout=RUN_S)
    table = page.get_by_role("table", name="Ablation by arm")
    for arm in ("random", "fixed (m=0.5)", "neutral", "learned"):
        expect(table.get_by_role("rowheader", name=arm)).to_be_visible()
    expect(table.get_by_role("row")).to_have_count(5)
    expect(page.get_by_text("Learned vs fixed:")).to_contain_text("2 episodes × seeds [0, 1], 6 tokens each")
    expect(page.get_by_test_id("chart-reward")).to_have_attribute("data-points", re.compile(r"^[1-9]\d*$"))
    expect(page.get_by_role("link", name=re.compile(r"^gating-ui v\d+$"))).to_be_visible()
    shoot(page, "gating-job")

    # SmolLM2 (the tiny test LM's context is too short for the chat-templated probes); one short answer
    evaluation = {
        "models": ["smollm2-135m-instruct@production"],
        "preferences": ["concise"],
        "prompts": 1,
        "max_new_tokens": 4,
        "capability": False,
        "collapse": False,
    }
    submitted_job(page, evaluation, kind="eval")
    expect(page.get_by_test_id("job-state")).to_have_text("succeeded", timeout=RUN_S)
    expect(page.get_by_role("table", name="Evaluation by model")).to_contain_text("smollm2-135m-instruct@1")
    plots = page.get_by_test_id("artifact-image")
    expect(plots).to_have_count(2)  # compliance.png, margin.png: fetched with the key, shown as images
    for i in range(2):
        expect(plots.nth(i)).to_have_js_property("complete", True)
        assert plots.nth(i).evaluate("img => img.naturalWidth") > 100
    expect(page.get_by_role("button", name="Download results.json")).to_be_visible()
    expect(page.get_by_test_id("chart-eval-compliance")).to_have_attribute("data-points", "1")
    shoot(page, "eval-job")
