"""`lyceum eval`: evaluate models and adapters (an `eval` job) and read the results.

    lyceum eval run --model kuro@1 --model kuro@2 [--preference identity ...] [--prompts 8] [--follow]
    lyceum eval show JOB_ID [--save DIR]
    lyceum eval loop --adapter kuro --preference identity [--steps 5] ...   (feedback_loop.py)

`run` submits the job (and with `--follow` follows it like `lyceum jobs submit --follow`, then prints the
table); `show` prints the table of a finished evaluation and, with `--save`, downloads its plots (PNG) and
`results.json`. The table has one row per model: compliance with each preference (verifier score, 0-1), the
log-prob margin of preferred over dispreferred answers (nats), capability (mean log-prob per token of
reference answers) and the collapse figures (token entropy, self-ROUGE-L, log-prob drift from the first)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lyceum_client.client import LyceumClient
from lyceum_client.feedback_loop import add_loop_command
from lyceum_client.follow import follow
from lyceum_client.render import FollowDisplay, job_summary, number

COLLAPSE_COLUMNS = (("entropy", "ENTROPY"), ("self_rouge_l", "SELF-ROUGE-L"), ("logprob_drift", "DRIFT"))


def add_eval_commands(groups: Any, output: argparse.ArgumentParser) -> None:
    """Registers `lyceum eval run|show` on the top-level subparsers."""
    evals = groups.add_parser("eval", help="evaluate models and adapters").add_subparsers(
        dest="command", required=True
    )
    p = evals.add_parser("run", parents=[output], help="submit an evaluation job")
    p.add_argument(
        "--model",
        dest="models",
        action="append",
        required=True,
        metavar="REF",
        help="a language model or adapter, name@alias or name@version (repeatable, in plot order)",
    )
    p.add_argument(
        "--preference",
        dest="preferences",
        action="append",
        metavar="P",
        help="no_emoji, concise or identity (repeatable; default: all)",
    )
    p.add_argument("--prompts", type=int, help="probe prompts per preference")
    p.add_argument("--samples", type=int, help="responses per prompt")
    p.add_argument("--max-new-tokens", type=int, help="tokens per response at most")
    p.add_argument("--temperature", type=float, help="sampling temperature (0 = greedy)")
    p.add_argument("--seed", type=int)
    p.add_argument("--no-capability", action="store_true", help="skip the capability probes")
    p.add_argument("--no-collapse", action="store_true", help="skip the collapse probes")
    p.add_argument("--queue", help="the queue to run on (default: the kind's)")
    p.add_argument("--follow", action="store_true", help="follow the job, then print the results")
    p.add_argument("--poll", action="store_true", help="poll instead of using the event stream")
    p.set_defaults(handler=run_eval)
    p = evals.add_parser("show", parents=[output], help="show an evaluation's results")
    p.add_argument("job_id")
    p.add_argument("--save", type=Path, metavar="DIR", help="download its plots and results.json into DIR")
    p.set_defaults(handler=show_eval)
    add_loop_command(evals, output)


def eval_config(args: argparse.Namespace) -> dict[str, Any]:
    """The job config the options describe; what is not given keeps the job kind's default."""
    # Every model's figures are recorded as it is done (one step per model), so a follower sees them come.
    config: dict[str, Any] = {"models": args.models, "run": {"log_every": 1}}
    options = {
        "preferences": args.preferences,
        "prompts": args.prompts,
        "samples": args.samples,
        "max_new_tokens": args.max_new_tokens,
        "temperature": args.temperature,
        "seed": args.seed,
    }
    config |= {k: v for k, v in options.items() if v is not None}
    if args.no_capability:
        config["capability"] = False
    if args.no_collapse:
        config["collapse"] = False
    return config


def run_eval(client: LyceumClient, args: argparse.Namespace, out: Console) -> int:
    job = client.submit_job("eval", eval_config(args), queue=args.queue)
    if not args.follow:
        if args.json:
            _print_json(job)
        else:
            out.print(job_summary(job))
        return 0
    if args.json:
        job = _follow_quietly(client, job["job_id"], args.poll)
        _print_json(job)
    else:
        out.print(job_summary(job))
        with FollowDisplay(out, job["job_id"]) as display:
            job = follow(client, job["job_id"], display, poll=args.poll)
        show_results(out, job)
    return 0 if job["state"] == "succeeded" else 1


def show_eval(client: LyceumClient, args: argparse.Namespace, out: Console) -> int:
    job = client.get_job(args.job_id)
    if args.json:
        _print_json(job)
    else:
        show_results(out, job)
    if args.save is not None:
        artifacts = (job.get("result") or {}).get("artifacts") or {}
        args.save.mkdir(parents=True, exist_ok=True)
        for name in artifacts.get("files") or []:
            path = args.save / name
            path.write_bytes(client.job_artifact(job["job_id"], name))
            (sys.stderr if args.json else sys.stdout).write(f"saved {path}\n")
    return 0


def results_table(models: list[dict[str, Any]]) -> Table:
    """One row per evaluated model: compliance and margin per preference, capability, collapse."""
    preferences = list(dict.fromkeys(p for m in models for p in (m.get("compliance") or {})))
    table = Table(box=None, header_style="bold")
    table.add_column("MODEL", no_wrap=True)
    for p in preferences:
        table.add_column(p.upper(), justify="right", no_wrap=True)
    for p in preferences:
        table.add_column(f"MARGIN {p.upper()}", justify="right", no_wrap=True)
    table.add_column("CAPABILITY", justify="right", no_wrap=True)
    for _, title in COLLAPSE_COLUMNS:
        table.add_column(title, justify="right", no_wrap=True)
    for m in models:
        compliance, margin = m.get("compliance") or {}, m.get("margin") or {}
        collapse = m.get("collapse") or {}
        cells = [
            m.get("model") or m.get("ref") or "?",
            *(number(compliance.get(p)) for p in preferences),
            *(number(margin.get(p)) for p in preferences),
            number(m.get("capability")),
            *(number(collapse.get(key)) for key, _ in COLLAPSE_COLUMNS),
        ]
        table.add_row(*(escape(c) for c in cells))
    return table


def show_results(out: Console, job: dict[str, Any]) -> None:
    out.print(job_summary(job))
    models = ((job.get("result") or {}).get("evaluation") or {}).get("models")
    if models:
        out.print(results_table(models))
    elif job["state"] == "succeeded":
        out.print("no evaluation results in this job")
    files = ((job.get("result") or {}).get("artifacts") or {}).get("files") or []
    if files:
        shown = ", ".join(files)
        out.print(escape(f"artifacts: {shown} (lyceum eval show {job['job_id']} --save DIR)"), style="dim")


def _follow_quietly(client: LyceumClient, job_id: str, poll: bool) -> dict[str, Any]:
    """Follows without drawing anything on stdout (it stays JSON): the bar goes to stderr."""
    with FollowDisplay(Console(stderr=True), job_id) as display:
        return follow(client, job_id, display, poll=poll)


def _print_json(body: Any) -> None:
    sys.stdout.write(json.dumps(body, indent=2) + "\n")
    sys.stdout.flush()
