"""`lyceum eval loop`: feedback -> distillation -> evaluation rounds for one preference, the way CLaaS's
evaluation harness runs them (steps, batch size, feedback repetitions), through the public API only.

    lyceum eval loop --adapter kuro --base smollm2-135m-instruct@production --preference identity \\
        [--steps 5] [--batch-size 4] [--repetitions 1] [--lr 3e-5] [--sdpo-steps 1] [--max-tokens 64] \\
        [--prompts 8] [--save DIR]

Each step chats `batch-size` of the preference's probe prompts (rotating, in CLaaS's order) with the adapter
as it is served (`model` = its name: the `serving` version), gives each completion the preference's feedback
(`repetitions` items each), starts the adapter's distillation at once and waits for it, printing its SDPO
figures and the gate's verdict. Then one `eval` job scores the base model and every version of the loop, in
order, on the preference, without the hint in the prompt: its table (and with `--save`, its plots) is the
curve. The adapter is created over `--base` if it does not exist."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lyceum_client.client import LyceumClient, LyceumClientError
from lyceum_client.follow import TERMINAL
from lyceum_client.render import number

SDPO_COLUMNS = ("distill_loss", "kl_reg", "is_ratio_mean", "clip_fraction", "grad_norm", "tokens")


def add_loop_command(evals: Any, output: argparse.ArgumentParser) -> None:
    """Registers `lyceum eval loop` on the `eval` subparsers."""
    p = evals.add_parser("loop", parents=[output], help="feedback -> distillation -> evaluation rounds")
    p.add_argument("--adapter", required=True, help="the adapter that learns (created over --base if new)")
    p.add_argument("--base", help="the language model a new adapter adapts, name@alias")
    p.add_argument("--preference", required=True, choices=("no_emoji", "concise", "identity"))
    p.add_argument("--steps", type=int, default=5, help="feedback rounds (one distillation each)")
    p.add_argument("--batch-size", type=int, default=4, help="completions given feedback per round")
    p.add_argument("--repetitions", type=int, default=1, help="feedback items per completion")
    p.add_argument("--lr", type=float, help="SDPO learning rate (default: the job kind's)")
    p.add_argument("--sdpo-steps", type=int, help="optimizer steps per distillation")
    p.add_argument("--max-tokens", type=int, default=64, help="tokens per completion at most")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--system", help="a system prompt for every chat (default: the model's own)")
    p.add_argument("--prompts", type=int, default=8, help="probe prompts in the final evaluation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--job-timeout", type=float, default=1800, help="seconds per job at most")
    p.add_argument("--save", help="download the evaluation's plots and results.json into this folder")
    p.set_defaults(handler=run_loop)


def run_loop(client: LyceumClient, args: argparse.Namespace, out: Console) -> int:
    pref = next(p for p in client.preferences() if p["name"] == args.preference)
    base, start = _adapter(client, args, out)
    training = {k: v for k, v in (("lr", args.lr), ("steps", args.sdpo_steps)) if v is not None}
    versions, rows = [start], []
    for step in range(args.steps):
        t0 = time.monotonic()
        items = []
        for i in range(args.batch_size):
            prompt = pref["probe_prompts"][(step * args.batch_size + i) % len(pref["probe_prompts"])]
            messages = ([{"role": "system", "content": args.system}] if args.system else []) + [
                {"role": "user", "content": prompt}
            ]
            seed = args.seed * 100_003 + step * args.batch_size + i
            completion = client.chat(
                args.adapter,
                messages,
                max_tokens=args.max_tokens,
                temperature=args.temperature,
                seed=seed,
                store=True,
            )
            for _ in range(args.repetitions):
                items.append(
                    client.give_feedback(completion["id"], pref["feedback"], training=training or None)
                )
        job = _distill(client, args, items)
        row = _row(step, job, time.monotonic() - t0)
        rows.append(row)
        out.print(_steps_table(rows[-1:], header=step == 0))
        if job["state"] == "succeeded":
            versions.append(job["result"]["adapter"]["version"])
    models = [base, *(f"{args.adapter}@{v}" for v in dict.fromkeys(versions))]
    out.print(escape(f"evaluating {', '.join(models)} on {args.preference}"), style="dim")
    from lyceum_client.eval_cli import show_results  # the same table as `lyceum eval show` (no cycle)

    config = {
        "models": models,
        "preferences": [args.preference],
        "prompts": args.prompts,
        "max_new_tokens": args.max_tokens,
        "seed": args.seed,
        "run": {"log_every": 1},
    }
    evaluation = _wait(client, client.submit_job("eval", config)["job_id"], args.job_timeout)
    show_results(out, evaluation)
    if args.save:
        folder = Path(args.save)
        folder.mkdir(parents=True, exist_ok=True)
        for name in ((evaluation.get("result") or {}).get("artifacts") or {}).get("files") or []:
            (folder / name).write_bytes(client.job_artifact(evaluation["job_id"], name))
            out.print(escape(f"saved {folder / name}"))
    return 0 if evaluation["state"] == "succeeded" else 1


def _adapter(client: LyceumClient, args: argparse.Namespace, out: Console) -> tuple[str, int]:
    """(the adapter's base as name@version, the version it is served at now); creates it if new."""
    try:
        adapter = client.get_adapter(args.adapter)
    except LyceumClientError as exc:
        if exc.status != 404 or not args.base:
            raise
        client.create_adapter(args.adapter, args.base)
        adapter = client.get_adapter(args.adapter)
        out.print(escape(f"created adapter {args.adapter} over {args.base}"))
    aliases = adapter["aliases"]
    start = aliases.get("serving", aliases["latest"])
    version = next(v for v in adapter["versions"] if v["version"] == start)
    owner_base = version["base"]  # owner/name@version
    return owner_base.split("/", 1)[1], start


def _distill(client: LyceumClient, args: argparse.Namespace, items: list[dict[str, Any]]) -> dict[str, Any]:
    """Starts the distillation of the round's items and waits for it. The gateway may have started it
    already (its batch filled): then the items name the job."""
    try:
        job_id = client.distill(args.adapter)["job_id"]
    except LyceumClientError as exc:
        if exc.status not in (400, 409):
            raise
        job_id = None
    deadline = time.monotonic() + args.job_timeout
    while job_id is None or any(client.get_feedback(i["feedback_id"])["job_id"] is None for i in items):
        if time.monotonic() > deadline:
            raise LyceumClientError("the round's feedback was never taken by a job", code="TIMEOUT")
        if job_id is None:
            taken = (client.get_feedback(i["feedback_id"])["job_id"] for i in items)
            job_id = next((j for j in taken if j), None)
        time.sleep(0.5)
    jobs = dict.fromkeys(client.get_feedback(i["feedback_id"])["job_id"] for i in items)
    finished = [_wait(client, j, args.job_timeout) for j in jobs]
    return finished[-1]


def _wait(client: LyceumClient, job_id: str, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while (job := client.get_job(job_id))["state"] not in TERMINAL:
        if time.monotonic() > deadline:
            raise LyceumClientError(f"job {job_id} did not end in {timeout_s:.0f} s", code="TIMEOUT")
        time.sleep(1.0)
    return job


def _row(step: int, job: dict[str, Any], seconds: float) -> dict[str, Any]:
    result = job.get("result") or {}
    gate = result.get("gate") or {}
    return {
        "step": step,
        "job": job["job_id"],
        "state": job["state"],
        "version": (result.get("adapter") or {}).get("version"),
        "serving": (result.get("adapter") or {}).get("serving"),
        "gate": "passed"
        if gate.get("passed")
        else ("; ".join(gate.get("reasons") or []) or job.get("error")),
        "metrics": job.get("metrics") or {},
        "seconds": seconds,
    }


def _steps_table(rows: list[dict[str, Any]], header: bool) -> Table:
    table = Table(box=None, show_header=header, header_style="bold")
    for title in ("STEP", "VERSION", "SERVING", *(c.upper() for c in SDPO_COLUMNS), "SECONDS", "GATE"):
        # one table per step, so that rows appear as steps end: fixed widths keep them under the header
        width = max(len(title), 8)
        table.add_column(
            title, justify="left" if title == "GATE" else "right", no_wrap=title != "GATE", min_width=width
        )
    for r in rows:
        table.add_row(
            str(r["step"]),
            str(r["version"] or "-"),
            str(r["serving"] or "-"),
            *(number(r["metrics"].get(c)) for c in SDPO_COLUMNS),
            f"{r['seconds']:.0f}",
            escape(str(r["gate"] if r["state"] == "succeeded" else f"{r['state']}: {r['gate']}")),
        )
    return table
