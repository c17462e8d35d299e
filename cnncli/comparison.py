"""Several models on one photo: each at its own input size, preprocessing and resize policy.

Every model gets the photo as `images.load_array` decodes it for its input size (the path every
command shares, so a photo scores the same here as in `cnn classify`), one warm-up pass, then
timed passes. The majority top-1 shows where models agree: a class is the same class when its
WordNet id is (ImageNet models), or its label (a trained model's own classes).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rich import box
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from cnncli.choices import Resize
from cnncli.engines import Classifier
from cnncli.images import load_array
from cnncli.labels import Prediction
from cnncli.networks import Network
from cnncli.output import CsvRows, human
from cnncli.timing import warm_median

#: Timed forward passes per model, after its warm-up pass.
TIMED_RUNS = 3


@dataclass(frozen=True)
class ModelRun:
    """One model's answer for the photo, with its weights, engine, size and speed, and the
    network and resize policy that gave it (to explain it again: `--montage`)."""

    arch: str
    weights: str
    engine: str
    precision: str
    predictions: tuple[Prediction, ...]
    params: int
    ms: float
    agrees_with_majority: bool = False
    network: Network | None = field(default=None, compare=False, repr=False)
    resize: Resize = field(default=Resize.crop, compare=False, repr=False)

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
    models: Sequence[tuple[Network, Resize, Callable[[], Classifier]]],
    top: int,
) -> Comparison:
    """Run each model's classifier (built lazily, one at a time, to bound memory) on `image`,
    each given the picture its resize policy makes.

    The photo is decoded for every input size and policy before the first model is built, so a
    file that cannot be read fails at once."""
    views = {(net.record.input_size, resize) for net, resize, _ in models}
    pixels = {(size, resize): load_array(image, size, resize)[None] for size, resize in views}
    runs = [
        _run(make(), resize, pixels[net.record.input_size, resize], top)
        for net, resize, make in models
    ]
    return _with_majority(image, runs)


def _run(classifier: Classifier, resize: Resize, pixels: np.ndarray, top: int) -> ModelRun:
    """One model's answer for the photo, timed after a warm-up pass."""
    scores, seconds = warm_median(lambda: classifier.scores(pixels), TIMED_RUNS)
    arch = classifier.arch
    return ModelRun(
        arch.name,
        classifier.network.weights,
        classifier.engine,
        classifier.precision,
        tuple(classifier.labels.decode(scores[0], top)),
        arch.params,
        seconds * 1000,
        network=classifier.network,
        resize=resize,
    )


def same_class(prediction: Prediction) -> str:
    """What makes two models' classes one class: ImageNet's WordNet id, else the label."""
    return prediction.wnid or prediction.label


def _with_majority(image: str, runs: list[ModelRun]) -> Comparison:
    """Mark the runs whose top-1 is the one more than half of the models chose."""
    votes = Counter(same_class(run.predictions[0]) for run in runs)
    key, count = votes.most_common(1)[0] if votes else (None, 0)
    if count * 2 <= len(runs) and len(runs) > 1:
        return Comparison(image, tuple(runs), None)
    agree = [same_class(r.predictions[0]) == key for r in runs]
    marked = tuple(
        dataclasses.replace(r, agrees_with_majority=a) for r, a in zip(runs, agree, strict=True)
    )
    majority = next(r.predictions[0] for r, a in zip(runs, agree, strict=True) if a)
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
