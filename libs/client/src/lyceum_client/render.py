"""How the `lyceum` command shows things: tables of jobs, datasets and model versions, one-line summaries, a
gating job's ablation table, the live progress bar of a followed job (step/total, throughput, ETA, loss) and
that of an upload (bytes sent)."""

from __future__ import annotations

from datetime import datetime
from types import TracebackType
from typing import Any, Self

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

STATE_STYLES = {
    "queued": "cyan",
    "running": "blue",
    "cancelling": "yellow",
    "cancelled": "yellow",
    "succeeded": "green",
    "failed": "red",
}
# Keys of a metrics point that every training step reports; anything else is an evaluation worth a line.
TRAINING_KEYS = {"loss", "throughput", "lr", "grad_norm", "tokens", "events"}


def state(text: str) -> str:
    style = STATE_STYLES.get(text, "white")
    return f"[{style}]{text}[/{style}]"


def when(iso: str | None) -> str:
    """An ISO timestamp as local `YYYY-MM-DD HH:MM:SS`."""
    if not iso:
        return "-"
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def progress_text(progress: dict[str, Any]) -> str:
    step, total = progress.get("step"), progress.get("total")
    if step is None:
        return "-"
    return f"{step}/{total}" if total else str(step)


def jobs_table(jobs: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold")
    table.add_column("JOB", no_wrap=True, min_width=32)  # whole ids, to copy into other commands
    for column in ("KIND", "QUEUE", "STATE", "PROGRESS", "ATTEMPT", "CREATED"):
        table.add_column(column, no_wrap=True)
    for job in jobs:
        table.add_row(
            escape(job["job_id"]),
            escape(job["kind"]),
            escape(job["queue"]),
            state(job["state"]),
            progress_text(job.get("progress") or {}),
            str(job["attempt"]),
            when(job["created_at"]),
        )
    return table


def size(n: int | None) -> str:
    """Bytes in decimal units: `913.4 kB`."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"


def datasets_table(datasets: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold")
    table.add_column("DATASET", no_wrap=True, min_width=35)  # whole ids, to paste into job configs
    for column in ("NAME", "FORMAT", "ROWS", "SIZE", "TOKENS", "CREATED"):
        table.add_column(column, no_wrap=True)
    for dataset in datasets:
        cells = [
            dataset["dataset_id"],
            dataset["name"],
            dataset["format"],
            str(dataset["rows"]),
            size(dataset["size_bytes"]),
            number((dataset.get("stats") or {}).get("tokens")),
            when(dataset["created_at"]),
        ]
        table.add_row(*(escape(cell) for cell in cells))
    return table


def dataset_summary(dataset: dict[str, Any]) -> str:
    """`dataset <id> (<format>, <rows> rows, <size>): <name>`, and what cleaning removed, if it ran."""
    text = (
        f"dataset {dataset['dataset_id']} ({dataset['format']}, {dataset['rows']} rows, "
        f"{size(dataset['size_bytes'])}): {dataset['name']}"
    )
    cleaning = dataset.get("cleaning") or {}
    if cleaning:
        removed = cleaning["rows_in"] - cleaning["rows_out"]
        text += f"; cleaning removed {removed} of {cleaning['rows_in']} rows"
        if cleaning.get("pii_rows_changed"):
            text += f", scrubbed PII in {cleaning['pii_rows_changed']}"
    return escape(text)


def models_table(models: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold")
    for column in ("MODEL", "VERSION", "KIND", "ALIASES", "METRICS", "JOB", "CREATED"):
        table.add_column(column, no_wrap=column != "METRICS")
    for model in models:
        metrics = ", ".join(f"{k}={number(v)}" for k, v in sorted(model["metrics"].items()))
        cells = [
            model["name"],
            str(model["version"]),
            model["kind"],
            ", ".join(model["aliases"]) or "-",
            metrics or "-",
            model.get("job_id") or "-",
            when(model["created_at"]),
        ]
        table.add_row(*(escape(cell) for cell in cells))
    return table


def tenants_table(tenants: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold")
    for column in ("TENANT", "QUOTAS", "CREATED"):
        table.add_column(column, no_wrap=True)
    for tenant in tenants:
        quotas = ", ".join(f"{k}={number(v)}" for k, v in sorted(tenant["quotas"].items())) or "defaults"
        table.add_row(*(escape(cell) for cell in (tenant["tenant_id"], quotas, when(tenant["created_at"]))))
    return table


def keys_table(keys: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold")
    for column in ("KEY", "TENANT", "SUBJECT", "NAME", "CREATED", "LAST USED", "REVOKED"):
        table.add_column(column, no_wrap=True)
    for key in keys:
        cells = [
            key["key_id"],
            key["tenant"],
            key.get("subject") or "-",
            key.get("name") or "-",
            when(key["created_at"]),
            when(key["last_used_at"]) if key.get("last_used_at") else "never",
            when(key["revoked_at"]) if key.get("revoked_at") else "-",
        ]
        table.add_row(*(escape(cell) for cell in cells))
    return table


def job_summary(job: dict[str, Any]) -> str:
    """`job <id> (<kind> on <queue>): <state>`, with the error or the registered model when it ended."""
    text = escape(f"job {job['job_id']} ({job['kind']} on {job['queue']}): ") + state(job["state"])
    if job.get("error"):
        text += escape(f": {job['error']}")
    model = (job.get("result") or {}).get("model")
    if model:
        text += escape(f" -> model {model.get('name')} v{model.get('version')}")
    return text


ABLATION_COLUMNS = (("reward", "REWARD"), ("diversity", "DIVERSITY"), ("ppl", "PPL TERM"))


def mean_std(figure: dict[str, Any] | None) -> str:
    """`0.2031 ± 0.0123`; `-` for a missing figure."""
    if not figure or figure.get("mean") is None:
        return "-"
    std = figure.get("std")
    return f"{figure['mean']:.4f} ± {std:.4f}" if std is not None else f"{figure['mean']:.4f}"


def ablation_table(ablation: dict[str, Any]) -> Table:
    """A `gating_ppo` job's ablation: one row per arm, mean ± std over its episodes (all seeds)."""
    table = Table(box=None, header_style="bold")
    table.add_column("ARM", no_wrap=True)
    for _, title in ABLATION_COLUMNS:
        table.add_column(title, justify="right", no_wrap=True)
    fixed = ablation.get("fixed_modulation")
    for arm, figures in (ablation.get("arms") or {}).items():
        label = f"{arm} (m={fixed:g})" if arm == "fixed" and isinstance(fixed, int | float) else arm
        table.add_row(escape(label), *(mean_std(figures.get(key)) for key, _ in ABLATION_COLUMNS))
    return table


def ablation_summary(result: dict[str, Any]) -> str:
    """The line under the ablation table: learned vs fixed, the episodes behind it, the gate signal."""
    ablation = result["ablation"]
    change = ablation.get("learned_vs_fixed")
    versus = f"{change * 100:+.1f} %" if isinstance(change, int | float) else "-"
    seeds = ", ".join(str(s) for s in ablation.get("seeds") or [])
    text = (
        f"learned vs fixed: {versus} mean reward; {ablation.get('episodes')} episodes x seeds [{seeds}], "
        f"{ablation.get('episode_length')} tokens each"
    )
    if result.get("gate_signal") is False:
        text += "; gate signal off (sampling only)"
    return escape(text)


class FollowDisplay:
    """A rich progress bar for one job, fed with the job's `progress` and `metrics` events."""

    def __init__(self, console: Console, job_id: str) -> None:
        self.console = console
        self.job_id = job_id
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[throughput]}"),
            TextColumn("ETA {task.fields[eta]}"),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[state]}"),
            console=console,
            transient=False,
        )
        self._task: TaskID | None = None
        self._loss: Any = None
        self._phase: str | None = None  # a multi-phase run's phase (a distilled DFM's teacher, student)

    def __enter__(self) -> Self:
        self._progress.start()
        self._task = self._progress.add_task(
            self.job_id[:12], total=None, throughput="-", eta="-", loss="-", state=state("queued")
        )
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()

    def progress(self, event: dict[str, Any]) -> None:
        """A `progress` event (or a polled job): state, step/total, throughput, ETA, loss."""
        assert self._task is not None
        progress = event.get("progress") or {}
        if progress.get("loss") is not None:
            self._loss = progress["loss"]
        self._phase = progress.get("phase") or self._phase
        throughput = progress.get("throughput")
        unit = progress.get("throughput_unit") or "/s"
        self._progress.update(
            self._task,
            total=progress.get("total"),
            completed=progress.get("step") or 0,
            throughput=f"{throughput:,.0f} {unit}" if throughput else "-",
            eta=duration(progress.get("eta_s")),
            loss=self._loss_text(),
            state=state(event["state"]),
        )

    def _loss_text(self) -> str:
        return number(self._loss) + (f" ({self._phase})" if self._phase and self._loss is not None else "")

    def metrics(self, point: dict[str, Any]) -> None:
        """A `metrics` event: training loss updates the bar; evaluation results get their own line."""
        assert self._task is not None
        values = point.get("values") or {}
        loss = values.get("loss", values.get("teacher_loss"))
        if loss is not None:
            self._loss = loss
            self._progress.update(self._task, loss=self._loss_text())
        # a distilled DFM's teacher trains first, its training figures named teacher_* (teacher_loss, ...)
        evaluation = {k: v for k, v in values.items() if k.removeprefix("teacher_") not in TRAINING_KEYS}
        if evaluation:
            shown = "  ".join(f"{k}={number(v)}" for k, v in sorted(evaluation.items()))
            self._progress.console.print(escape(f"step {point['step']}: {shown}"))


class UploadDisplay:
    """A rich progress bar of one file's upload: bytes sent of the total, speed, time left."""

    def __init__(self, console: Console, name: str, total: int) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._name = name
        self._total = total
        self._task: TaskID | None = None

    def __enter__(self) -> Self:
        self._progress.start()
        self._task = self._progress.add_task(self._name, total=self._total)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()

    def sent(self, sent: int) -> None:
        """The bytes of the file sent so far."""
        assert self._task is not None
        self._progress.update(self._task, completed=sent)
