"""An evaluation's plots as PNG files, one figure per concern, x = the models in the order evaluated (a series
of adapter versions reads left to right): compliance per preference, log-prob margin per preference,
capability, and the collapse figures. Matplotlib's object API on the Agg canvas (no pyplot, no global
backend); file names are fixed, so a client can ask for them by name."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

COMPLIANCE = "compliance.png"
MARGIN = "margin.png"
CAPABILITY = "capability.png"
COLLAPSE = "collapse.png"
COLLAPSE_PANELS = (
    ("entropy", "mean token entropy (nats)"),
    ("self_rouge_l", "self-ROUGE-L"),
    ("logprob_drift", "log-prob drift vs first (nats/token)"),
)
DPI = 100


def write_plots(results: Sequence[dict[str, Any]], folder: Path) -> list[str]:
    """Writes the plots the results allow into `folder`; returns their file names. Each result is one
    model's: {"ref", "compliance": {pref: score}, "margin": {pref: nats}, "capability": float | None,
    "collapse": {"entropy", "self_rouge_l", "logprob_drift"?} | None}."""
    folder.mkdir(parents=True, exist_ok=True)
    refs = [r["ref"] for r in results]
    written = []
    if _series(results, "compliance"):
        _lines(
            folder / COMPLIANCE, refs, _series(results, "compliance"), "compliance (verifier score)", (0, 1)
        )
        written.append(COMPLIANCE)
    if _series(results, "margin"):
        _lines(folder / MARGIN, refs, _series(results, "margin"), "log-prob margin, preferred - dispreferred")
        written.append(MARGIN)
    capability = [r.get("capability") for r in results]
    if any(v is not None for v in capability):
        _lines(folder / CAPABILITY, refs, {"capability": capability}, "capability (mean log-prob per token)")
        written.append(CAPABILITY)
    if any(r.get("collapse") for r in results):
        _collapse(folder / COLLAPSE, refs, results)
        written.append(COLLAPSE)
    return written


def _series(results: Sequence[dict[str, Any]], key: str) -> dict[str, list[float | None]]:
    """{name: [value per model (None where missing)]} for a dict-valued result field."""
    names: dict[str, None] = {}
    for r in results:
        names |= dict.fromkeys(r.get(key) or {})
    return {n: [(r.get(key) or {}).get(n) for r in results] for n in names}


def _plot(ax: Any, refs: list[str], name: str, values: list[float | None]) -> None:
    points = [(i, v) for i, v in enumerate(values) if v is not None]
    if points:
        ax.plot([i for i, _ in points], [v for _, v in points], marker="o", label=name)


def _axes(ax: Any, refs: list[str], title: str) -> None:
    ax.set_title(title)
    ax.set_xticks(range(len(refs)))
    ax.set_xticklabels(refs, rotation=30, ha="right", fontsize=8)
    ax.grid(True, alpha=0.3)


def _lines(
    path: Path,
    refs: list[str],
    series: dict[str, list[float | None]],
    title: str,
    ylim: tuple[float, float] | None = None,
) -> None:
    fig = Figure(figsize=(max(5.0, 1.2 * len(refs) + 2), 4), layout="constrained")
    ax = fig.add_subplot()
    for name, values in series.items():
        _plot(ax, refs, name, values)
    _axes(ax, refs, title)
    if ylim is not None:
        ax.set_ylim(ylim[0] - 0.05, ylim[1] + 0.05)
    if len(series) > 1:
        ax.legend(fontsize=8)
    fig.savefig(path, dpi=DPI, metadata={"Software": None})


def _collapse(path: Path, refs: list[str], results: Sequence[dict[str, Any]]) -> None:
    fig = Figure(figsize=(max(10.0, 2.4 * len(refs) + 4), 3.6), layout="constrained")
    for i, (key, title) in enumerate(COLLAPSE_PANELS, start=1):
        ax = fig.add_subplot(1, len(COLLAPSE_PANELS), i)
        _plot(ax, refs, key, [(r.get("collapse") or {}).get(key) for r in results])
        _axes(ax, refs, title)
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
