"""Evaluation metrics for binary-outcome prediction (numpy only): AUC, accuracy, BCE, calibration."""

from __future__ import annotations

import numpy as np


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve via the rank statistic, ties averaged; y is thresholded at 0.5."""
    y = np.asarray(y) >= 0.5
    p = np.asarray(p, dtype=np.float64)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    order = np.argsort(p, kind="mergesort")
    _, inverse, counts = np.unique(p[order], return_inverse=True, return_counts=True)
    avg_rank = np.cumsum(counts) - (counts - 1) / 2.0  # 1-based average rank of each distinct value
    ranks = np.empty_like(p)
    ranks[order] = avg_rank[inverse]
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def binary_metrics(y: np.ndarray, p: np.ndarray, bins: int = 10) -> dict[str, float]:
    """AUC, accuracy, BCE and expected calibration error (ECE over `bins` equal-width bins)."""
    y = np.asarray(y, dtype=np.float64)
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    bce = float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())
    which = np.minimum((p * bins).astype(int), bins - 1)
    ece = sum(
        abs(y[which == b].mean() - p[which == b].mean()) * (which == b).mean()
        for b in range(bins)
        if (which == b).any()
    )
    return {
        "auc": roc_auc(y, p),
        "accuracy": float(((p >= 0.5) == (y >= 0.5)).mean()),
        "bce": bce,
        "ece": float(ece),
        "n": float(len(y)),
    }
