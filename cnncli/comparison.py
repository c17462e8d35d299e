"""Several architectures on one photo: each at its own input size and preprocessing.

Every model gets the photo as `images.load_array` decodes it for its input size (the path every
command shares, so a photo scores the same here as in `cnn classify`), one warm-up pass, then
timed passes. The majority top-1 shows where architectures agree.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from rich import box
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from cnncli.choices import Resize
from cnncli.engines import Classifier
from cnncli.images import load_array
from cnncli.labels import Prediction, decode
from cnncli.output import CsvRows, human
from cnncli.registry import Arch
from cnncli.timing import warm_median

#: Timed forward passes per model, after its warm-up pass.
TIMED_RUNS = 3


@dataclass(frozen=True)
class ModelRun:
    """One architecture's answer for the photo, with its weights, engine, size and speed."""

    arch: str
    weights: str
    engine: str
    precision: str
    predictions: tuple[Prediction, ...]
    params: int
    ms: float
    agrees_with_majority: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "weights": self.weights,
            "engine": self.engine,
            "precision": self.precision,
            "predictions": [p.as_dict() for p in self.predictions],
            "params": self.params,
            "ms": round(self.ms, 2),
            "agrees_with_majority": self.agrees_with_majority,
        }


@dataclass(frozen=True)
class Comparison:
    """All architectures' runs on one photo and the majority top-1 (None without one)."""

    image: str
    runs: tuple[ModelRun, ...]
    majority: Prediction | None

    def as_dict(self) -> dict[str, Any]:
        engines = {run.engine for run in self.runs}
        return {
            "image": self.image,
            "engine": engines.pop() if len(engines) == 1 else "mixed",
            "majority": self.majority.label if self.majority else None,
            "models": [run.as_dict() for run in self.runs],
        }


def compare(
    image: str,
    models: Sequence[tuple[Arch, Callable[[], Classifier]]],
    top: int,
    resize: Resize,
) -> Comparison:
    """Run each model's classifier (built lazily, one at a time, to bound memory) on `image`.

    The photo is decoded for every input size before the first model is built, so a file that
    cannot be read fails at once."""
    pixels = {
        arch.input_size: load_array(image, arch.input_size, resize)[None] for arch, _ in models
    }
    runs = [_run(make(), pixels[arch.input_size], top) for arch, make in models]
    return _with_majority(image, runs)


def _run(classifier: Classifier, pixels: np.ndarray, top: int) -> ModelRun:
    """One model's answer for the photo, timed after a warm-up pass."""
    scores, seconds = warm_median(lambda: classifier.scores(pixels), TIMED_RUNS)
    arch = classifier.arch
    predictions = tuple(decode(scores[0], top))
    return ModelRun(
        arch.name,
        str(classifier.weights),
        classifier.engine,
        classifier.precision,
        predictions,
        arch.params,
        seconds * 1000,
    )


def _with_majority(image: str, runs: list[ModelRun]) -> Comparison:
    """Mark the runs whose top-1 is the one more than half of the models chose."""
    votes = Counter(run.predictions[0].index for run in runs)
    index, count = votes.most_common(1)[0] if votes else (None, 0)
    if count * 2 <= len(runs) and len(runs) > 1:
        return Comparison(image, tuple(runs), None)
    marked = tuple(
        dataclasses.replace(r, agrees_with_majority=r.predictions[0].index == index) for r in runs
    )
    majority = next(r.predictions[0] for r in runs if r.predictions[0].index == index)
    return Comparison(image, marked, majority)


def render(comparison: Comparison) -> list[RenderableType]:
    """A column per architecture, a row per rank, then parameters, speed and agreement."""
    table = Table(title=comparison.image, title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("#", justify="right")
    for run in comparison.runs:
        table.add_column(run.arch)
    depth = max((len(r.predictions) for r in comparison.runs), default=0)
    for rank in range(depth):
        cells = [
            _cell(r.predictions[rank]) if rank < len(r.predictions) else "" for r in comparison.runs
        ]
        table.add_row(str(rank + 1), *cells)
    table.add_section()
    table.add_row("params", *(human(r.params) for r in comparison.runs))
    table.add_row("ms", *(f"{r.ms:.1f} ({_engine(r)})" for r in comparison.runs))
    agrees = ("yes" if r.agrees_with_majority else "no" for r in comparison.runs)
    table.add_row("agrees with majority", *agrees)
    verdict = comparison.majority.label if comparison.majority else "none (no top-1 shared by most)"
    return [table, Text(f"majority top-1: {verdict}")]


def _engine(run: ModelRun) -> str:
    """The engine, with the precision when it is not the default: `litert`, `litert int8`."""
    return run.engine if run.precision == "fp32" else f"{run.engine} {run.precision}"


def _cell(p: Prediction) -> str:
    return f"{p.label} {p.score:.3f}"


#: The columns of `--format csv`: the keys of the JSON, a row per (architecture, rank).
CSV_HEADER = (
    "arch",
    "weights",
    "engine",
    "precision",
    "rank",
    "index",
    "wnid",
    "label",
    "score",
    "params",
    "ms",
    "agrees_with_majority",
)


def rows(comparison: Comparison) -> CsvRows:
    """CSV: one row per (architecture, rank)."""
    body = [
        (
            r.arch,
            r.weights,
            r.engine,
            r.precision,
            p.rank,
            p.index,
            p.wnid,
            p.label,
            f"{p.score:.6g}",
            r.params,
            f"{r.ms:.2f}",
            r.agrees_with_majority,
        )
        for r in comparison.runs
        for p in r.predictions
    ]
    return CSV_HEADER, body
