"""The `lyceum` command: submit, list, show, follow, cancel and resume training jobs, upload, list, show and
delete datasets, list models and move their aliases, and run evaluations (`lyceum eval`, in eval_cli),
against a Lyceum gateway (`--url`, env LYCEUM_URL; `--api-key`, env LYCEUM_API_KEY); and, with an admin key
(`--admin-key`, env LYCEUM_ADMIN_KEY), create and list tenants and create, list and revoke their API keys. A
new key is printed once, alone on the last line of stdout.

Exit status: 0 on success; 1 when the gateway refuses or cannot be reached, or when a followed job ends
failed or cancelled; 2 for usage errors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from lyceum_client import __version__
from lyceum_client.client import DEFAULT_URL, LyceumClient, LyceumClientError
from lyceum_client.eval_cli import add_eval_commands
from lyceum_client.follow import follow
from lyceum_client.render import (
    FollowDisplay,
    UploadDisplay,
    ablation_summary,
    ablation_table,
    dataset_summary,
    datasets_table,
    job_summary,
    jobs_table,
    keys_table,
    models_table,
    tenants_table,
)

STATES = ("queued", "running", "cancelling", "cancelled", "succeeded", "failed")

Handler = Callable[[LyceumClient, argparse.Namespace, Console], int]


class UsageError(Exception):
    """Bad input the gateway never saw (an unreadable config file)."""


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Piped output is for reading and grepping: no 80-column wrapping (COLUMNS still wins).
    width = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 200
    out = Console(highlight=False, width=width)
    err = Console(stderr=True, highlight=False, width=width)
    try:
        client = LyceumClient(
            args.url, args.api_key or None, admin_key=args.admin_key or None, timeout_s=args.timeout
        )
        with client:
            return args.handler(client, args, out)
    except LyceumClientError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        return 1
    except UsageError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        return 2
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lyceum", description="Lyceum's command line: training jobs and models."
    )
    parser.add_argument("--version", action="version", version=f"lyceum {__version__}")
    parser.add_argument(
        "--url",
        default=os.environ.get("LYCEUM_URL", DEFAULT_URL),
        help="the gateway's base URL (env LYCEUM_URL; default %(default)s)",
    )
    parser.add_argument(
        "--api-key", default=os.environ.get("LYCEUM_API_KEY"), help="API key (env LYCEUM_API_KEY)"
    )
    parser.add_argument(
        "--admin-key",
        default=os.environ.get("LYCEUM_ADMIN_KEY"),
        help="admin key for `tenants` and `keys` (env LYCEUM_ADMIN_KEY)",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default 30)")
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--json", action="store_true", help="print the gateway's JSON instead of a summary")
    groups = parser.add_subparsers(
        dest="group", required=True, metavar="{jobs,datasets,models,eval,tenants,keys}"
    )

    jobs = groups.add_parser("jobs", help="training jobs").add_subparsers(dest="command", required=True)
    p = jobs.add_parser("submit", parents=[output], help="submit a job")
    p.add_argument("kind", help="the job kind, e.g. dfm_pretrain or lm_pretrain")
    p.add_argument("--config", required=True, help="the config: a JSON file, - for stdin, or inline JSON")
    p.add_argument("--queue", help="the queue to run on (default: the kind's)")
    p.add_argument("--idempotency-key", help="resubmitting with the same key returns the same job")
    _follow_options(p, "then follow it to its end (exit status as for `jobs follow`)")
    p.set_defaults(handler=submit_job)
    p = jobs.add_parser("list", parents=[output], help="list jobs, newest first")
    p.add_argument("--state", choices=STATES)
    p.add_argument("--kind")
    p.add_argument("--limit", type=int, default=20, help="page size (default 20)")
    p.add_argument("--before", help="the cursor a previous page printed")
    p.add_argument("--all", action="store_true", help="every page")
    p.set_defaults(handler=list_jobs)
    p = jobs.add_parser("show", parents=[output], help="show a job")
    p.add_argument("job_id")
    p.set_defaults(handler=show_job)
    p = jobs.add_parser(
        "follow", help="follow a job live; exit 0 if it succeeds, 1 if it fails or is cancelled"
    )
    p.add_argument("job_id")
    _follow_options(p, None)
    p.set_defaults(handler=follow_job, follow=True)
    p = jobs.add_parser("cancel", parents=[output], help="cancel a job")
    p.add_argument("job_id")
    p.set_defaults(handler=cancel_job)
    p = jobs.add_parser("resume", parents=[output], help="resume a cancelled or failed job")
    p.add_argument("job_id")
    _follow_options(p, "then follow it to its end")
    p.set_defaults(handler=resume_job)

    _dataset_commands(groups, output)

    models = groups.add_parser("models", help="the model registry").add_subparsers(
        dest="command", required=True
    )
    p = models.add_parser("list", parents=[output], help="list model versions and their aliases")
    p.add_argument("name", nargs="?", help="only this model")
    p.set_defaults(handler=list_models)
    p = models.add_parser("alias", parents=[output], help="point an alias at a version")
    p.add_argument("name")
    p.add_argument("alias")
    p.add_argument("version", type=int)
    p.set_defaults(handler=set_alias)
    p = models.add_parser("rollback", parents=[output], help="move an alias back to its previous version")
    p.add_argument("name")
    p.add_argument("alias")
    p.set_defaults(handler=rollback_alias)
    add_eval_commands(groups, output)
    _admin_commands(groups, output)
    return parser


def _dataset_commands(groups: Any, output: argparse.ArgumentParser) -> None:
    datasets = groups.add_parser("datasets", help="uploaded datasets").add_subparsers(
        dest="command", required=True
    )
    p = datasets.add_parser("upload", parents=[output], help="upload a file, with a progress bar")
    p.add_argument("file", type=Path, help="JSON (an array), JSONL, CSV or plain text")
    p.add_argument(
        "--format",
        required=True,
        help="alpaca, chat, completion or text (rows), or kt3, pykt, jsonl (DFM learner histories)",
    )
    p.add_argument("--name", help="a label (default: the file's name)")
    p.add_argument("--dedupe", action="store_true", help="drop exact duplicate rows")
    p.add_argument(
        "--scrub-pii", action="store_true", help="replace e-mails, phones, cards and IPs by placeholders"
    )
    p.add_argument("--min-length", type=int, help="drop rows of fewer characters")
    p.add_argument("--max-length", type=int, help="drop rows of more characters")
    p.add_argument("--tokenizer", help="count tokens with this language model's tokenizer (name@alias)")
    p.set_defaults(handler=upload_dataset)
    p = datasets.add_parser("list", parents=[output], help="list datasets, newest first")
    p.set_defaults(handler=list_datasets)
    p = datasets.add_parser("show", parents=[output], help="show a dataset and its statistics")
    p.add_argument("dataset_id")
    p.set_defaults(handler=show_dataset)
    p = datasets.add_parser("delete", help="delete a dataset")
    p.add_argument("dataset_id")
    p.set_defaults(handler=delete_dataset)


def _admin_commands(groups: Any, output: argparse.ArgumentParser) -> None:
    tenants = groups.add_parser("tenants", help="tenants (admin key)").add_subparsers(
        dest="command", required=True
    )
    p = tenants.add_parser("create", parents=[output], help="create a tenant")
    p.add_argument("tenant_id")
    p.add_argument(
        "--quota",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a quota override: rps, burst, max_learners, max_sessions or max_jobs (repeatable)",
    )
    p.set_defaults(handler=create_tenant)
    p = tenants.add_parser("list", parents=[output], help="list tenants and their quotas")
    p.set_defaults(handler=list_tenants)

    keys = groups.add_parser("keys", help="API keys (admin key)").add_subparsers(
        dest="command", required=True
    )
    p = keys.add_parser("create", parents=[output], help="create a key; it is printed once, on the last line")
    p.add_argument("tenant")
    p.add_argument("--subject", help="the end user the key acts for")
    p.add_argument("--name", help="a label for people")
    p.set_defaults(handler=create_key)
    p = keys.add_parser("list", parents=[output], help="list keys (never their secret)")
    p.add_argument("--tenant", help="only this tenant's")
    p.set_defaults(handler=list_keys)
    p = keys.add_parser("revoke", parents=[output], help="revoke a key; it stops working at once")
    p.add_argument("key_id")
    p.set_defaults(handler=revoke_key)


def _follow_options(parser: argparse.ArgumentParser, follow_help: str | None) -> None:
    if follow_help is not None:
        parser.add_argument("--follow", action="store_true", help=follow_help)
    parser.add_argument("--poll", action="store_true", help="poll instead of using the event stream")


# --- jobs ---------------------------------------------------------------------------------------------------


def submit_job(client: LyceumClient, args: argparse.Namespace, out: Console) -> int:
    config = read_config(args.config)
    job = client.submit_job(args.kind, config, queue=args.queue, idempotency_key=args.idempotency_key)
    _show(out, args, job, job_summary(job))
    return _follow(client, job["job_id"], args, out) if args.follow else 0


def list_jobs(client: LyceumClient, args: argparse.Namespace, out: Console) -> int:
    if args.all:
        jobs, cursor = list(client.iter_jobs(state=args.state, kind=args.kind, page_size=100)), None
    else:
        page = client.list_jobs(state=args.state, kind=args.kind, limit=args.limit, before=args.before)
        jobs, cursor = page["jobs"], page["next_cursor"]
    if args.json:
        _print_json({"jobs": jobs, "next_cursor": cursor})
        return 0
    out.print(jobs_table(jobs) if jobs else "no jobs")
    if cursor:
        out.print(f"more: lyceum jobs list --before {cursor}", style="dim")
    return 0


def show_job(client: LyceumClient, args: argparse.Namespace, out: Console) -> int:
    job = client.get_job(args.job_id)
    if args.json:
        _print_json(job)
    else:
        out.print(job_summary(job))
        out.print_json(data=job)
        show_ablation(out, job)
    return 0


def follow_job(client: LyceumClient, args: argparse.Namespace, out: Console) -> int:
    return _follow(client, args.job_id, args, out)


def cancel_job(client: LyceumClient, args: argparse.Namespace, out: Console) -> int:
    job = client.cancel_job(args.job_id)
    _show(out, args, job, job_summary(job))
    return 0


def resume_job(client: LyceumClient, args: argparse.Namespace, out: Console) -> int:
    job = client.resume_job(args.job_id)
    _show(out, args, job, job_summary(job))
    return _follow(client, job["job_id"], args, out) if args.follow else 0


def _follow(client: LyceumClient, job_id: str, args: argparse.Namespace, out: Console) -> int:
    with FollowDisplay(out, job_id) as display:
        job = follow(client, job_id, display, poll=args.poll)
    out.print(job_summary(job))
    show_ablation(out, job)
    return 0 if job["state"] == "succeeded" else 1


def show_ablation(out: Console, job: dict[str, Any]) -> None:
    """A `gating_ppo` job's ablation table, if its result holds one."""
    result = job.get("result") or {}
    if result.get("ablation"):
        out.print(ablation_table(result["ablation"]))
        out.print(ablation_summary(result))


# --- datasets -----------------------------------------------------------------------------------------------


def upload_dataset(client: LyceumClient, args: argparse.Namespace, out: Console) -> int:
    try:
        total = args.file.stat().st_size
    except OSError as exc:
        raise UsageError(f"cannot read {args.file}: {exc.strerror}") from None
    options = {
        "name": args.name,
        "dedupe": args.dedupe,
        "scrub_pii": args.scrub_pii,
        "min_length": args.min_length,
        "max_length": args.max_length,
        "tokenizer": args.tokenizer,
    }
    if args.json:  # stdout stays machine-readable: no bar
        dataset = client.upload_dataset(args.file, args.format, **options)
    else:
        with UploadDisplay(out, args.file.name, total) as display:
            dataset = client.upload_dataset(args.file, args.format, on_progress=display.sent, **options)
    _show(out, args, dataset, dataset_summary(dataset))
    return 0


def list_datasets(client: LyceumClient, args: argparse.Namespace, out: Console) -> int:
    datasets = client.list_datasets()
    if args.json:
        _print_json({"datasets": datasets})
    else:
        out.print(datasets_table(datasets) if datasets else "no datasets")
    return 0


def show_dataset(client: LyceumClient, args: argparse.Namespace, out: Console) -> int:
    dataset = client.get_dataset(args.dataset_id)
    if args.json:
        _print_json(dataset)
    else:
        out.print(dataset_summary(dataset))
        out.print_json(data={"stats": dataset["stats"], "cleaning": dataset["cleaning"]})
    return 0


def delete_dataset(client: LyceumClient, args: argparse.Namespace, out: Console) -> int:
    client.delete_dataset(args.dataset_id)
    out.print(escape(f"dataset {args.dataset_id} deleted"))
    return 0


# --- models -------------------------------------------------------------------------------------------------


def list_models(client: LyceumClient, args: argparse.Namespace, out: Console) -> int:
    models = client.list_models(args.name)
    if args.json:
        _print_json({"models": models})
    else:
        out.print(models_table(models) if models else "no models")
    return 0


def set_alias(client: LyceumClient, args: argparse.Namespace, out: Console) -> int:
    moved = client.set_alias(args.name, args.alias, args.version)
    _show(out, args, moved, _alias_summary(moved, "->"))
    return 0


def rollback_alias(client: LyceumClient, args: argparse.Namespace, out: Console) -> int:
    moved = client.rollback_alias(args.name, args.alias)
    _show(out, args, moved, _alias_summary(moved, "rolled back to"))
    return 0


def _alias_summary(moved: dict[str, Any], verb: str) -> str:
    before = moved.get("previous_version")
    was = f" (was v{before})" if before is not None else " (new alias)"
    return escape(f"{moved['name']}: {moved['alias']} {verb} v{moved['version']}{was}")


# --- tenants and keys ---------------------------------------------------------------------------------------


def create_tenant(client: LyceumClient, args: argparse.Namespace, out: Console) -> int:
    tenant = client.create_tenant(args.tenant_id, parse_quotas(args.quota))
    _show(out, args, tenant, escape(f"tenant {tenant['tenant_id']} created"))
    return 0


def list_tenants(client: LyceumClient, args: argparse.Namespace, out: Console) -> int:
    tenants = client.list_tenants()
    if args.json:
        _print_json({"tenants": tenants})
    else:
        out.print(tenants_table(tenants) if tenants else "no tenants")
    return 0


def create_key(client: LyceumClient, args: argparse.Namespace, out: Console) -> int:
    key = client.create_key(args.tenant, subject=args.subject, name=args.name)
    if args.json:
        _print_json(key)
        return 0
    out.print(escape(f"key {key['key_id']} created for tenant {key['tenant']}; it is shown only this once:"))
    # Plain stdout, alone on the last line: `lyceum keys create acme | tail -1` is the key.
    sys.stdout.write(key["key"] + "\n")
    sys.stdout.flush()
    return 0


def list_keys(client: LyceumClient, args: argparse.Namespace, out: Console) -> int:
    keys = client.list_keys(args.tenant)
    if args.json:
        _print_json({"keys": keys})
    else:
        out.print(keys_table(keys) if keys else "no keys")
    return 0


def revoke_key(client: LyceumClient, args: argparse.Namespace, out: Console) -> int:
    key = client.revoke_key(args.key_id)
    _show(out, args, key, escape(f"key {key['key_id']} of tenant {key['tenant']} revoked"))
    return 0


def parse_quotas(entries: list[str]) -> dict[str, float]:
    """`["max_jobs=4", "rps=2.5"]` -> `{"max_jobs": 4, "rps": 2.5}`."""
    quotas: dict[str, float] = {}
    for entry in entries:
        name, sep, value = entry.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = None
        if not sep or not name or number is None:
            raise UsageError(f"--quota {entry!r}: expected NAME=NUMBER, e.g. max_jobs=4")
        quotas[name] = int(number) if number.is_integer() and name != "rps" else number
    return quotas


# --- helpers ------------------------------------------------------------------------------------------------


def read_config(source: str) -> dict[str, Any]:
    """A JSON object from a file, stdin (`-`) or the argument itself (when it starts with `{`)."""
    if source == "-":
        text, where = sys.stdin.read(), "stdin"
    elif source.lstrip().startswith("{"):
        text, where = source, "--config"
    else:
        try:
            text, where = Path(source).read_text(), source
        except OSError as exc:
            raise UsageError(f"cannot read config file {source}: {exc.strerror}") from None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{where} is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise UsageError(f"{where} must hold a JSON object")
    return config


def _show(out: Console, args: argparse.Namespace, body: dict[str, Any], summary: str) -> None:
    if args.json:
        _print_json(body)
    else:
        out.print(summary)


def _print_json(body: Any) -> None:
    # Plain stdout, not rich: machine-readable whatever the terminal.
    sys.stdout.write(json.dumps(body, indent=2) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
