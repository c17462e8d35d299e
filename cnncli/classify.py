"""Classifying images: a model with its record turns photos into ranked ImageNet labels.

`Classifier` pairs a registry record with something that maps a batch of preprocessed pixels to
1000 softmax scores (today a Keras model), so preprocessing and decoding are derived from the
record and never restated by callers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from rich import box
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from cnncli import loader
from cnncli.errors import InputError
from cnncli.images import Resize, load_array
from cnncli.inputs import Entry
from cnncli.labels import Prediction, decode
from cnncli.output import CsvRows, bar
from cnncli.preprocess import preprocess
from cnncli.registry import Arch

Forward = Callable[[np.ndarray], np.ndarray]


@dataclass
class Classifier:
    """A registry record and its forward pass (preprocessed batch -> softmax scores).

    Which engine runs the pass (`engines.open_classifier` chooses) is recorded for the output.
    """

    arch: Arch
    forward: Forward
    engine: str

    def scores(self, pixels: np.ndarray) -> np.ndarray:
        """Softmax scores (n, 1000) for RGB pixels (n, size, size, 3) in 0-255."""
        return self.forward(preprocess(pixels, self.arch.preprocessing))


def keras_forward(model: Any) -> Forward:
    """A compiled forward pass: `predict_on_batch` traces once (eager calls are ~4x slower
    here), and unlike `predict` it prints no progress bar and adds no per-call dataset setup."""

    def forward(batch: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict_on_batch(batch))

    return forward


@dataclass(frozen=True)
class ImageResult:
    """The top predictions for one image, or why it could not be classified."""

    image: str
    predictions: tuple[Prediction, ...] = ()
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        if self.error is not None:
            return {"image": self.image, "error": self.error}
        return {"image": self.image, "predictions": [p.as_dict() for p in self.predictions]}


def classify(
    classifier: Classifier,
    entries: Sequence[Entry],
    top: int,
    resize: Resize,
    batch_size: int,
    advance: Callable[[int], None] = lambda _n: None,
) -> list[ImageResult]:
    """Results for `entries` in order; images go through the model `batch_size` at a time."""
    results: list[ImageResult] = []
    for start in range(0, len(entries), batch_size):
        chunk = entries[start : start + batch_size]
        results.extend(_classify_batch(classifier, chunk, top, resize))
        advance(len(chunk))
    return results


def _classify_batch(
    classifier: Classifier, chunk: Sequence[Entry], top: int, resize: Resize
) -> list[ImageResult]:
    """One batch: decode every readable image, one forward pass, errors kept in place."""
    size = classifier.arch.input_size
    slots: list[ImageResult | None] = []
    pixels: list[np.ndarray] = []
    for entry in chunk:
        if entry.error is not None:
            slots.append(ImageResult(entry.image, error=entry.error))
            continue
        try:
            pixels.append(load_array(entry.image, size, resize))
            slots.append(None)
        except InputError as exc:
            slots.append(ImageResult(entry.image, error=exc.reason))
    scores = iter(classifier.scores(np.stack(pixels)) if pixels else [])
    return [
        slot or ImageResult(entry.image, tuple(decode(next(scores), top)))
        for entry, slot in zip(chunk, slots, strict=True)
    ]


def document(
    classifier: Classifier, weights: loader.Weights, results: Sequence[ImageResult]
) -> dict:
    """The JSON document of `cnn classify`."""
    return {
        "arch": classifier.arch.name,
        "weights": str(weights),
        "engine": classifier.engine,
        "results": [r.as_dict() for r in results],
    }


def render(results: Sequence[ImageResult]) -> list[RenderableType]:
    """Per image: a table of rank, label, wnid and score with a bar, or its error."""
    out: list[RenderableType] = []
    for result in results:
        if result.error is not None:
            out.append(Text(f"{result.image}: error: {result.error}", style="red"))
            continue
        table = Table(title=result.image, title_justify="left", box=box.SIMPLE_HEAD)
        for column, justify in (
            ("#", "right"),
            ("label", "left"),
            ("wnid", "left"),
            ("score", "right"),
            ("", "left"),
        ):
            table.add_column(column, justify=justify)  # type: ignore[arg-type]
        for p in result.predictions:
            table.add_row(str(p.rank), p.label, p.wnid, f"{p.score:.4f}", bar(p.score))
        out.append(table)
    return out


def rows(results: Sequence[ImageResult]) -> CsvRows:
    """CSV: one row per (image, rank); a failed image is one row with its error."""
    header = ("image", "rank", "index", "wnid", "label", "score", "error")
    body = [
        (r.image, p.rank, p.index, p.wnid, p.label, f"{p.score:.6g}", "")
        for r in results
        for p in r.predictions
    ] + [(r.image, "", "", "", "", "", r.error) for r in results if r.error is not None]
    return header, body
