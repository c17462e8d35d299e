"""Training's pictures, drawn with matplotlib: the learning curves and a confusion matrix.

Each is written whole (`files.atomic_write`), with matplotlib's Agg backend (no display needed)
and its figure closed afterwards, so a long multi-architecture run does not accumulate figures.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cnncli import files
from cnncli.training import Epoch


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def curves(history: Sequence[Epoch], best: tuple[str, int] | None, path: Path) -> None:
    """Loss and accuracy per epoch, train against val, phases one after another on the x axis
    (a line marks where fine-tuning starts) and the best epoch marked."""
    plt = _pyplot()
    figure, (loss, accuracy) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    steps = np.arange(1, len(history) + 1)
    for axis, key, title in ((loss, "loss", "loss"), (accuracy, "accuracy", "accuracy")):
        axis.plot(steps, [getattr(e, key) for e in history], label="train")
        axis.plot(steps, [getattr(e, f"val_{key}") for e in history], label="val")
        for step, (before, after) in enumerate(itertools.pairwise(history), start=1):
            if before.phase != after.phase:
                axis.axvline(step + 0.5, color="grey", linestyle=":", label=after.phase)
        if best is not None:
            at = next(i for i, e in enumerate(history, 1) if (e.phase, e.epoch) == best)
            axis.axvline(at, color="black", linewidth=0.8, label=f"best ({best[0]} {best[1]})")
        axis.set(title=title, xlabel="epoch")
        axis.legend()
    _save(plt, figure, path)


def confusion(matrix: np.ndarray, classes: Sequence[str], title: str, path: Path) -> None:
    """A confusion matrix (rows: true class, columns: predicted), counts written in the cells
    when there are few enough classes to read them."""
    plt = _pyplot()
    side = min(4 + 0.45 * len(classes), 30)
    figure, axis = plt.subplots(figsize=(side, side * 0.9), layout="constrained")
    image = axis.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axis, shrink=0.8)
    ticks = np.arange(len(classes))
    axis.set_xticks(ticks, list(classes), rotation=90)
    axis.set_yticks(ticks, list(classes))
    axis.set(title=title, xlabel="predicted", ylabel="true")
    if len(classes) <= 30:
        peak = matrix.max(initial=0)
        for (row, column), count in np.ndenumerate(matrix):
            colour = "white" if count > peak / 2 else "black"
            axis.text(column, row, str(count), ha="center", va="center", color=colour)
    _save(plt, figure, path)


def _save(plt: Any, figure: Any, path: Path) -> None:
    try:
        files.atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=100))
    finally:
        plt.close(figure)
