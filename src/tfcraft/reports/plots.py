"""Plots of a run with matplotlib's Agg backend (no display needed), saved as PNG files.

Example:

>>> import pathlib, tempfile
>>> path = learning_curves([{"epoch": 0, "loss": 1.0}, {"epoch": 1, "loss": 0.5}],
...                        pathlib.Path(tempfile.mkdtemp()))
>>> path.name
'learning_curves.png'
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

__all__ = [
    "detector_curves",
    "interval_calibration",
    "learning_curves",
    "prediction_bands",
    "reliability",
]

_SKIPPED = {"epoch", "nonfinite_steps", "learning_rate"}


def _save(figure, path: Path) -> Path:
    """Save to a temporary name and rename (atomic); on failure the old file stays."""
    tmp = path.with_name(f".{path.stem}.partial.png")
    try:
        figure.savefig(tmp, dpi=90, bbox_inches="tight")
        tmp.replace(path)  # atomic rename, as every file tfcraft writes
    finally:
        plt.close(figure)
        tmp.unlink(missing_ok=True)
    return path


def learning_curves(rows: list[dict], folder: Path) -> Path:
    """One panel per logged quantity (loss, metrics, grad_norm, kl), train and `val_` together."""
    keys = sorted(
        {k for row in rows for k in row if k not in _SKIPPED and not k.startswith("val_")}
    )
    columns = min(3, max(1, len(keys)))
    lines = math.ceil(max(1, len(keys)) / columns)
    figure, axes = plt.subplots(lines, columns, figsize=(4.2 * columns, 3 * lines), squeeze=False)
    epochs = [row.get("epoch", i) + 1 for i, row in enumerate(rows)]
    for axis, key in zip(axes.flat, keys, strict=False):
        axis.plot(epochs, [row.get(key, np.nan) for row in rows], label="train")
        if any(f"val_{key}" in row for row in rows):
            axis.plot(epochs, [row.get(f"val_{key}", np.nan) for row in rows], label="validation")
            axis.legend()
        axis.set_title(key)
        axis.set_xlabel("epoch")
    for axis in list(axes.flat)[len(keys) :]:
        axis.axis("off")
    figure.tight_layout()
    return _save(figure, Path(folder) / "learning_curves.png")


def reliability(y_true, probs, folder: Path, num_bins: int = 10) -> Path:
    """Reliability diagram: accuracy against confidence per bin (`bayes.reliability_diagram`)."""
    from tfcraft.bayes import reliability_diagram

    diagram = reliability_diagram(y_true, probs, num_bins=num_bins)
    figure, axis = plt.subplots(figsize=(4.5, 4))
    centers = 0.5 * (diagram["bin_edges"][1:] + diagram["bin_edges"][:-1])
    axis.bar(
        centers,
        np.nan_to_num(diagram["accuracy"]),
        width=1 / num_bins,
        alpha=0.6,
        edgecolor="black",
        label="observed",
    )
    axis.plot([0, 1], [0, 1], "k--", label="perfect calibration")
    axis.set_xlabel("confidence")
    axis.set_ylabel("accuracy")
    axis.set_title("Reliability diagram (test)")
    axis.legend()
    return _save(figure, Path(folder) / "reliability.png")


def interval_calibration(nominal, observed, folder: Path) -> Path:
    """Reliability diagram of a regression: observed against nominal coverage of intervals."""
    figure, axis = plt.subplots(figsize=(4.5, 4))
    axis.plot(nominal, observed, "o-", label="observed")
    axis.plot([0, 1], [0, 1], "k--", label="perfect calibration")
    axis.set(
        xlabel="nominal coverage of the central interval",
        ylabel="observed coverage",
        title="Interval calibration (test)",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    axis.legend()
    return _save(figure, Path(folder) / "interval_calibration.png")


def prediction_bands(y_true, mean, lower, upper, folder: Path, level: float) -> Path:
    """Prediction against truth with the central `level` interval as error bars."""
    y_true, mean = np.ravel(y_true), np.ravel(mean)
    figure, axis = plt.subplots(figsize=(4.5, 4))
    if lower is not None:
        errors = np.vstack([mean - np.ravel(lower), np.ravel(upper) - mean])
        axis.errorbar(
            y_true,
            mean,
            yerr=errors,
            fmt="o",
            markersize=3,
            alpha=0.6,
            elinewidth=0.8,
            label=f"{level:.0%} interval",
        )
    else:
        axis.plot(y_true, mean, "o", markersize=3, alpha=0.6)
    low, high = float(np.min(y_true)), float(np.max(y_true))
    axis.plot([low, high], [low, high], "k--", label="y = x")
    axis.set_xlabel("truth")
    axis.set_ylabel("prediction")
    axis.set_title("Prediction vs truth (test)")
    axis.legend()
    return _save(figure, Path(folder) / "prediction_vs_truth.png")


def detector_curves(y_true, scores, folder: Path) -> Path:
    """ROC and precision-recall curves and the score histogram of inliers and outliers."""
    from sklearn import metrics as skm

    y_true, scores = np.asarray(y_true), np.asarray(scores)
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    fpr, tpr, _ = skm.roc_curve(y_true, scores)
    axes[0].plot(fpr, tpr)
    axes[0].plot([0, 1], [0, 1], "k--")
    axes[0].set(title=f"ROC (AUC {skm.auc(fpr, tpr):.3f})", xlabel="FPR", ylabel="TPR")
    precision, recall, _ = skm.precision_recall_curve(y_true, scores)
    axes[1].plot(recall, precision)
    axes[1].set(title="Precision-recall", xlabel="recall", ylabel="precision")
    finite = np.isfinite(scores)
    bins = np.histogram_bin_edges(scores[finite], bins=30)
    axes[2].hist(scores[finite & (y_true == 0)], bins=bins, alpha=0.6, label="inliers")
    axes[2].hist(scores[finite & (y_true == 1)], bins=bins, alpha=0.6, label="outliers")
    axes[2].set(title="Anomaly scores", xlabel="score")
    axes[2].legend()
    figure.tight_layout()
    return _save(figure, Path(folder) / "detector_curves.png")
