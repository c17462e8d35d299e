"""Classifying images: a model with its record turns photos into ranked ImageNet labels.

`Classifier` pairs a registry record with something that maps a batch of preprocessed pixels to
1000 softmax scores (a Keras model, or a LiteRT interpreter: `engines` chooses), so preprocessing
and decoding are derived from the record and never restated by callers. `stream` carries a photo
library through it a batch at a time.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
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

#: Batches decoded ahead of the one the model runs: enough to keep it busy, few enough that
#: memory stays a few batches of pixels.
LOOKAHEAD = 2


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
    entries: Iterable[Entry],
    top: int,
    resize: Resize,
    batch_size: int,
) -> list[ImageResult]:
    """Results for `entries` in order; images go through the model `batch_size` at a time."""
    return [result for batch in stream(classifier, entries, top, resize, batch_size)
            for result in batch]  # fmt: skip


def stream(
    classifier: Classifier,
    entries: Iterable[Entry],
    top: int,
    resize: Resize,
    batch_size: int,
) -> Iterator[list[ImageResult]]:
    """Results a batch at a time, in input order, with memory bounded whatever the count.

    A thread pool decodes the next `LOOKAHEAD` batches while the model runs the current one
    (Pillow and the engines release the GIL), so decoding hides behind inference; `entries` is
    read only as far as that look-ahead.
    """
    size = classifier.arch.input_size
    pool = ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="cnn-decode")
    pending: deque[list[tuple[str, Future[np.ndarray | str]]]] = deque()
    try:
        for chunk in _chunks(entries, batch_size):
            pending.append([(e.image, pool.submit(_decode, e, size, resize)) for e in chunk])
            if len(pending) > LOOKAHEAD:
                yield _infer(classifier, pending.popleft(), top)
        while pending:
            yield _infer(classifier, pending.popleft(), top)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _chunks(entries: Iterable[Entry], size: int) -> Iterator[list[Entry]]:
    iterator = iter(entries)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _decode(entry: Entry, size: int, resize: Resize) -> np.ndarray | str:
    """The model's input for one entry, or why there is none. Whatever a file holds, its
    failure is its own: an unexpected exception from a decoder is reported, not raised."""
    if entry.error is not None:
        return entry.error
    try:
        return load_array(entry.path or entry.image, size, resize)
    except InputError as exc:
        return exc.reason
    except Exception as exc:
        return f"cannot decode image ({type(exc).__name__}: {exc})"


def _infer(
    classifier: Classifier, pending: list[tuple[str, Future[np.ndarray | str]]], top: int
) -> list[ImageResult]:
    """One batch: a forward pass over its decoded images, errors kept in place."""
    decoded = [(image, future.result()) for image, future in pending]
    pixels = [value for _, value in decoded if not isinstance(value, str)]
    scores = iter(classifier.scores(np.stack(pixels)) if pixels else [])
    return [
        ImageResult(image, error=value)
        if isinstance(value, str)
        else ImageResult(image, tuple(decode(next(scores), top)))
        for image, value in decoded
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


#: The columns of `--format csv`; the first names the image.
CSV_HEADER = ("image", "rank", "index", "wnid", "label", "score", "error")


def rows(results: Sequence[ImageResult]) -> CsvRows:
    """CSV: one row per (image, rank) in input order; a failed image is one row with its error."""
    return CSV_HEADER, [row for result in results for row in _rows(result)]


def _rows(r: ImageResult) -> list[tuple[Any, ...]]:
    if r.error is not None:
        return [(r.image, "", "", "", "", "", r.error)]
    return [
        (r.image, p.rank, p.index, p.wnid, p.label, f"{p.score:.6g}", "") for p in r.predictions
    ]
