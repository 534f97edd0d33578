"""Pictures of a run: training curves (``convnext train`` writes ``curves.png``) and a confusion
matrix (``convnext evaluate --confusion-png``). matplotlib (Agg, no display) is the optional ``plot``
extra; without it :class:`PlotsUnavailable` says which extra to install. Files are written beside
their destination and renamed into place."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from convnext_common.fileio import atomic_write

PLOT_EXTRA_HINT = 'pip install "convnext-twins[plot]"'


class PlotsUnavailable(ImportError):
    """matplotlib is not installed; the message names the extra that installs it."""


def _pyplot() -> Any:
    try:
        matplotlib = importlib.import_module("matplotlib")
    except ImportError:
        raise PlotsUnavailable(f"matplotlib is not installed ({PLOT_EXTRA_HINT})") from None
    matplotlib.use("Agg", force=True)  # files only: never a window, works without a display
    return importlib.import_module("matplotlib.pyplot")


def _save(figure: Any, path: Path) -> None:
    plt = _pyplot()
    try:
        atomic_write(Path(path), lambda tmp: figure.savefig(tmp, format="png", dpi=100))
    finally:
        plt.close(figure)


#: the picture both training paths write beside metrics.json
CURVES_NAME = "curves.png"


def write_curves(history: Sequence[dict], path: Path) -> None:
    """Loss and accuracy per epoch, train and val (and the raw weights' val with an EMA), as a PNG."""
    plt = _pyplot()
    epochs = [int(e["epoch"]) for e in history]
    figure, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(9, 3.6))
    series = [("train", "train_", "-"), ("val", "val_", "-"), ("val (raw weights)", "raw_val_", "--")]
    for label, prefix, style in series:
        if history and f"{prefix}loss" in history[0]:
            loss_ax.plot(epochs, [e[f"{prefix}loss"] for e in history], style, marker="o", label=label)
            acc_ax.plot(epochs, [100 * e[f"{prefix}accuracy"] for e in history], style, marker="o", label=label)
    for ax, title in ((loss_ax, "loss"), (acc_ax, "accuracy (%)")):
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    figure.tight_layout()
    _save(figure, path)


def write_loss_curve(history: Sequence[dict], path: Path) -> None:
    """The training loss per epoch (``convnext pretrain``: no labels, no accuracy), as a PNG."""
    plt = _pyplot()
    figure, ax = plt.subplots(1, 1, figsize=(4.8, 3.6))
    ax.plot([int(e["epoch"]) for e in history], [e["train_loss"] for e in history], "-", marker="o", label="train")
    ax.set_xlabel("epoch")
    ax.set_title("reconstruction loss (removed patches)")
    ax.grid(alpha=0.3)
    ax.legend()
    figure.tight_layout()
    _save(figure, path)


def write_confusion(matrix: np.ndarray, labels: Sequence[str], path: Path, title: str = "") -> None:
    """The confusion matrix (rows: true class, columns: predicted) with counts in the cells."""
    plt = _pyplot()
    matrix = np.asarray(matrix)
    n = len(labels)
    side = min(16.0, max(4.0, 0.45 * n + 2.5))
    figure, ax = plt.subplots(figsize=(side, side))
    image = ax.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(n), labels=list(labels), rotation=90 if max(map(len, labels), default=0) > 3 else 0)
    ax.set_yticks(range(n), labels=list(labels))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    if n <= 30:
        threshold = matrix.max() / 2 if matrix.size else 0
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=8,
                        color="white" if matrix[i, j] > threshold else "black")
    figure.tight_layout()
    _save(figure, path)
