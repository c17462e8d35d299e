"""How good a model is on photos whose classes are known (`cnn evaluate`): top-1 and top-5,
per-class precision, recall, F1 and support, the confusion matrix and the worst mistakes, as
timm's validate.py and Ultralytics' `val` report them; and their views (table, JSON, CSV, a
confusion-matrix picture).

DATA holds a folder per class, the layout `cnn train`, Keras and torchvision read (or train/
and val/ beside each other: then val/, else test/, is what is measured). Each folder names one
of the model's classes: a trained model's by its name, ImageNet's by WordNet id (n02124075) or
Keras label (Egyptian_cat), so ImageNet's validation set sorted into class folders checks a
network's published top-1 with one command. A folder naming no class of the model is refused
before any model loads.

Photos stream through the classify pipeline (`pipeline.scored`: decoded ahead, on either
engine); what is kept is a count matrix over the model's classes and the few worst mistakes, so
memory does not grow with the number of photos. A photo that cannot be read is one error line,
counted, and the others go on.
"""

from __future__ import annotations

import heapq
import os
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich import box
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from cnncli import files
from cnncli.choices import Resize
from cnncli.engines import Classifier
from cnncli.env import Environment
from cnncli.errors import CnnError, UsageError, did_you_mean, message
from cnncli.inputs import Entry, Inputs, is_image_name, printable
from cnncli.labels import Class, Labels
from cnncli.output import CsvRows
from cnncli.pipeline import scored
from cnncli.progress import progress

#: The splits of a data set laid out as train/, val/ and test/, in the order one is chosen to
#: measure a model on: the held-out ones, never train/.
HELD_OUT = ("val", "test")

#: The column of the confusion matrix for predictions of classes DATA has no folder for (an
#: ImageNet model's 990 other classes when DATA has ten).
OTHER = "(other)"

#: Above this many classes the terminal shows no confusion table (it would not fit): JSON, CSV
#: and `--plot` still have it.
TABLE_CLASSES = 12

#: How many accuracy figures: top-1, and top-5 when the model has more than five classes.
TOP_K = 5


@dataclass(frozen=True)
class ClassFolder:
    """A folder of DATA and the model's class it holds photos of."""

    path: Path
    cls: Class


def class_folders(data: str | os.PathLike, labels: Labels, env: Environment) -> list[ClassFolder]:
    """DATA's class folders, each matched to one of `labels` (in the model's class order); a
    `UsageError` naming the folder for one that names no class, a warning for photos lying
    outside any class folder (they are skipped: their class is unknown)."""
    root = _measured(Path(data), labels, env)
    try:
        children = sorted(os.scandir(root), key=lambda child: child.name)
    except OSError as exc:
        raise UsageError(
            f"{printable(str(root))}: cannot read the folder ({exc.strerror})"
        ) from exc
    if loose := [c.name for c in children if c.is_file() and is_image_name(c.name)]:
        env.warn(
            f"{printable(str(root))}: skipped {len(loose)} image(s) outside any class folder "
            f"(first: {printable(loose[0])}); their class is the folder they are in"
        )
    folders = [c for c in children if c.is_dir() and not c.name.startswith(".")]
    if not folders:
        raise UsageError(
            f"{printable(str(root))}: no class folders; put each class's photos in "
            f"{printable(str(root))}/<class>/, named as the model names the class"
        )
    matched = [ClassFolder(Path(child.path), _class_of(child, labels)) for child in folders]
    return sorted(matched, key=lambda folder: folder.cls.index)


def _measured(root: Path, labels: Labels, env: Environment) -> Path:
    """The folder of class folders to measure: DATA, or the held-out split of a data set laid
    out as DATA/train and DATA/val (or DATA/test)."""
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise UsageError(
            f"{printable(str(root))}: {what}; give a folder holding a folder of photos per class"
        )
    held = [root / split for split in HELD_OUT if (root / split).is_dir()]
    if held and (root / "train").is_dir() and not labels.named("train"):
        env.note(f"measuring {printable(str(held[0]))}, the held-out split (not train/)")
        return held[0]
    return root


def _class_of(folder: os.DirEntry[str], labels: Labels) -> Class:
    """The one class a folder's name names, or a `UsageError` that says how to name it."""
    matches = labels.named(folder.name)
    if len(matches) == 1:
        return matches[0]
    where = printable(folder.path)
    if matches:
        wnids = " or ".join(str(c.wnid) for c in matches)
        raise UsageError(
            f"{where}: '{folder.name}' names {len(matches)} ImageNet classes; name the folder "
            f"by WordNet id ({wnids})"
        )
    if labels.imagenet:
        hint = did_you_mean(folder.name.lower(), {c.label.lower(): c.label for c in labels})
        raise UsageError(
            f"{where}: '{printable(folder.name)}' names no ImageNet class; name class folders "
            f"by WordNet id (n02124075) or Keras label (Egyptian_cat){hint}"
        )
    hint = did_you_mean(folder.name, [c.label for c in labels])
    raise UsageError(
        f"{where}: '{printable(folder.name)}' is not a class of {labels.owner} (its classes: "
        f"{', '.join(c.label for c in labels)}){hint}; rename the folder or leave it out"
    )


@dataclass(frozen=True, order=True)
class Mistake:
    """A photo the model got wrong: how sure it was of the wrong class, and what it should have
    said (ordered by that score: the most confident mistakes are the worst)."""

    score: float
    image: str = field(compare=False)
    true: Class = field(compare=False)
    predicted: Class = field(compare=False)
    true_score: float = field(compare=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "true": self.true.label,
            "predicted": self.predicted.label,
            "score": self.score,
            "true_score": self.true_score,
        }


class Tally:
    """What evaluating keeps while photos stream: a count per (true, predicted) class pair over
    all the model's classes, top-5 hits, failures, and a heap of the `worst` worst mistakes."""

    def __init__(self, labels: Labels, worst: int) -> None:
        self.labels = labels
        self.counts = np.zeros((len(labels), len(labels)), np.int64)
        self.top5 = 0
        self.failed = 0
        self.worst = worst
        self.mistakes: list[Mistake] = []

    def add(self, image: str, true: int, scores: np.ndarray) -> None:
        """One photo of class `true` and the model's scores for it."""
        predicted = int(np.argmax(scores))
        self.counts[true, predicted] += 1
        self.top5 += int((scores > scores[true]).sum() < TOP_K)
        if predicted != true and self.worst:
            mistake = Mistake(
                float(scores[predicted]),
                image,
                self.labels[true],
                self.labels[predicted],
                float(scores[true]),
            )
            if len(self.mistakes) < self.worst:
                heapq.heappush(self.mistakes, mistake)
            else:
                heapq.heappushpop(self.mistakes, mistake)

    def evaluation(self, classes: Sequence[Class], about: Mapping[str, str]) -> Evaluation:
        """The figures over DATA's `classes` (the rows; columns for them and, when the model
        has others, one `(other)` column for all those), with `about` (what was measured with
        what: data, arch, weights, engine, precision, model)."""
        index = [cls.index for cls in classes]
        rows = self.counts[index]
        matrix = rows[:, index]
        other = len(classes) < len(self.labels)
        if other:
            matrix = np.column_stack([matrix, rows.sum(axis=1) - matrix.sum(axis=1)])
        return Evaluation(
            dict(about),
            tuple(classes),
            matrix,
            other,
            self.top5 if len(self.labels) > TOP_K else None,
            self.failed,
            tuple(sorted(self.mistakes, reverse=True)),
        )


@dataclass(frozen=True)
class ClassMetrics:
    """One class's figures: None where undefined (precision of a class never predicted,
    recall of a class with no photos, F1 of a class neither)."""

    cls: Class
    support: int
    precision: float | None
    recall: float | None
    f1: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.cls.index,
            "wnid": self.cls.wnid,
            "label": self.cls.label,
            "support": self.support,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
        }


@dataclass(frozen=True)
class Evaluation:
    """A model measured on DATA: its classes there (the rows), the confusion matrix over them
    (a last column `(other)` when the model has classes DATA lacks), accuracy, mistakes."""

    about: Mapping[str, str]
    classes: tuple[Class, ...]
    matrix: np.ndarray
    other: bool
    top5_hits: int | None
    failed: int
    mistakes: tuple[Mistake, ...]

    @property
    def images(self) -> int:
        """Photos measured (those that could not be read are `failed`)."""
        return int(self.matrix.sum())

    @property
    def top1(self) -> float | None:
        correct = int(np.trace(self.matrix[:, : len(self.classes)]))
        return correct / self.images if self.images else None

    @property
    def top5(self) -> float | None:
        """None for a model with five classes or fewer (every photo would be a hit)."""
        if self.top5_hits is None or not self.images:
            return None
        return self.top5_hits / self.images

    @property
    def predicted(self) -> list[str]:
        """The confusion matrix's column labels."""
        return [c.label for c in self.classes] + ([OTHER] if self.other else [])

    def per_class(self) -> list[ClassMetrics]:
        """Each class's figures, from its row (its photos) and its column (photos predicted as
        it; every photo measured is of one of DATA's classes)."""
        support = self.matrix.sum(axis=1)
        predicted_as = self.matrix[:, : len(self.classes)].sum(axis=0)
        return [
            _metrics(cls, int(self.matrix[i, i]), int(support[i]), int(predicted_as[i]))
            for i, cls in enumerate(self.classes)
        ]

    def macro(self) -> dict[str, float | None]:
        """Each figure averaged over the classes where it is defined (sklearn's macro
        average, without counting undefined figures as 0)."""
        metrics = self.per_class()
        return {
            name: _mean([getattr(m, name) for m in metrics])
            for name in ("precision", "recall", "f1")
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.about,
            "images": self.images,
            "failed": self.failed,
            "top1": self.top1,
            "top5": self.top5,
            "classes": [m.as_dict() for m in self.per_class()],
            "macro": self.macro(),
            "confusion": {
                "true": [c.label for c in self.classes],
                "predicted": self.predicted,
                "matrix": self.matrix.tolist(),
            },
            "worst": [m.as_dict() for m in self.mistakes],
        }


def _metrics(cls: Class, hits: int, support: int, predicted_as: int) -> ClassMetrics:
    """F1 as 2TP / (2TP + FP + FN): a class with photos that is never predicted has no
    precision but an F1 of 0 (it found none of them), not an undefined one that the macro
    average would leave out."""
    precision = hits / predicted_as if predicted_as else None
    recall = hits / support if support else None
    f1 = 2 * hits / (support + predicted_as) if support + predicted_as else None
    return ClassMetrics(cls, support, precision, recall, f1)


def _mean(values: Sequence[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return sum(defined) / len(defined) if defined else None


def evaluate(
    env: Environment,
    classifier: Classifier,
    folders: Sequence[ClassFolder],
    resize: Resize,
    batch_size: int,
    worst: int,
) -> Evaluation:
    """Every photo under `folders` through `classifier`, a batch at a time behind a progress
    bar; each photo that cannot be read is one error line and counted."""
    tally = Tally(classifier.labels, worst)
    truths: deque[int] = deque()  # the class of each photo read ahead, in stream order
    inputs = Inputs(tuple(str(folder.path) for folder in folders), recursive=True)
    with progress(env, f"evaluating {classifier.arch.name}") as meter:
        meter.count_total(inputs.count)
        for batch in scored(classifier, _entries(folders, truths), resize, batch_size):
            for image, value in batch:
                true = truths.popleft()
                if isinstance(value, str):
                    tally.failed += 1
                    meter.print(message("error", f"{printable(image)}: {value}"), style="red")
                else:
                    tally.add(image, true, value)
            meter.advance(len(batch))
    classes = sorted({folder.cls for folder in folders}, key=lambda cls: cls.index)
    about = {
        "data": str(folders[0].path.parent),  # every class folder is a child of the one measured
        "arch": classifier.arch.name,
        "weights": classifier.network.weights,
        "engine": classifier.engine,
        "precision": classifier.precision,
        "model": classifier.tag,
    }
    return tally.evaluation(classes, about)


def _entries(folders: Sequence[ClassFolder], truths: deque[int]) -> Iterator[Entry]:
    """The photos of each class folder (at any depth, as Keras and torchvision read one),
    noting each one's class in `truths` as it is handed out."""
    for folder in folders:
        for entry in Inputs((str(folder.path),), recursive=True).entries():
            truths.append(folder.cls.index)
            yield entry


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def render(result: Evaluation) -> list[RenderableType]:
    """A headline (counts, top-1, top-5), the per-class table, the confusion table (when it
    fits a terminal) and the worst mistakes."""
    about = result.about
    out: list[RenderableType] = [
        Text(
            f"{about['arch']}{' in int8' if about.get('precision') == 'int8' else ''} on "
            f"{about['data']}: {result.images:,} images ({result.failed:,} "
            f"failed), top-1 {_percent(result.top1)}, top-5 {_percent(result.top5)}",
            style="bold",
        )
    ]
    out.append(_class_table(result))
    if len(result.classes) <= TABLE_CLASSES:
        out.append(_confusion_table(result))
    else:
        out.append(
            Text(
                f"confusion matrix of {len(result.classes)} classes: see --format json or csv, "
                "or --plot FILE.png"
            )
        )
    if result.mistakes:
        out.append(_mistakes_table(result))
    return out


def _class_table(result: Evaluation) -> Table:
    wnids = any(cls.wnid for cls in result.classes)
    table = Table(box=box.SIMPLE_HEAD, title="per class", title_justify="left")
    table.add_column("class")
    if wnids:
        table.add_column("wnid")
    for column in ("precision", "recall", "f1", "support"):
        table.add_column(column, justify="right")
    for m in result.per_class():
        wnid = [m.cls.wnid or ""] if wnids else []
        figures = (_figure(m.precision), _figure(m.recall), _figure(m.f1), f"{m.support:,}")
        table.add_row(m.cls.label, *wnid, *figures)
    table.add_section()
    macro = result.macro()
    figures = (_figure(macro["precision"]), _figure(macro["recall"]), _figure(macro["f1"]))
    table.add_row("macro average", *([""] if wnids else []), *figures, f"{result.images:,}")
    return table


def _confusion_table(result: Evaluation) -> Table:
    table = Table(
        box=box.SIMPLE_HEAD,
        title="confusion (rows: true class, columns: predicted)",
        title_justify="left",
    )
    table.add_column("")
    for label in result.predicted:
        table.add_column(label, justify="right")
    for cls, row in zip(result.classes, result.matrix, strict=True):
        table.add_row(cls.label, *(f"{n:,}" for n in row))
    return table


def _mistakes_table(result: Evaluation) -> Table:
    table = Table(box=box.SIMPLE_HEAD, title="worst mistakes", title_justify="left")
    for column, justify in (
        ("image", "left"),
        ("true", "left"),
        ("predicted", "left"),
        ("score", "right"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for m in result.mistakes:
        table.add_row(printable(m.image), m.true.label, m.predicted.label, f"{m.score:.4f}")
    return table


def rows(result: Evaluation) -> CsvRows:
    """CSV: a row per class of DATA, its figures, then its row of the confusion matrix (a
    column per predicted class, `predicted:LABEL`)."""
    header = [
        "class",
        "index",
        "wnid",
        "support",
        "precision",
        "recall",
        "f1",
        *(f"predicted:{label}" for label in result.predicted),
    ]
    body = [
        (m.cls.label, m.cls.index, m.cls.wnid or "", m.support, *_cells(m), *counts)
        for m, counts in zip(result.per_class(), result.matrix.tolist(), strict=True)
    ]
    return header, body


def _cells(m: ClassMetrics) -> tuple[str, ...]:
    return tuple("" if v is None else f"{v:.6g}" for v in (m.precision, m.recall, m.f1))


#: The picture formats `--plot` writes, by the file's extension.
PLOT_FORMATS = (".png", ".svg", ".pdf")


def check_plot(path: Path) -> str:
    """The picture format of `--plot FILE` (its extension), checked before any photo is
    measured, so a wrong name costs nothing; `UsageError` for an extension matplotlib is not
    asked to write."""
    suffix = path.suffix.lower()
    if suffix not in PLOT_FORMATS:
        raise UsageError(f"--plot {path}: give a .png (or .svg, .pdf) file name")
    return suffix


def plot(result: Evaluation, path: Path) -> None:
    """The confusion matrix as a picture (rows normalised to each class's photos, so a class
    with few photos is as visible as one with many; counts written in the cells while they
    fit), written whole to `path` (PNG, or SVG/PDF by the extension)."""
    from matplotlib.figure import Figure

    n_rows, n_cols = result.matrix.shape
    support = result.matrix.sum(axis=1, keepdims=True)
    shares = np.divide(result.matrix, support, out=np.zeros(result.matrix.shape), where=support > 0)
    side = min(30.0, max(4.0, 0.45 * n_cols + 2.5))
    figure = Figure(figsize=(side, min(30.0, max(3.5, 0.45 * n_rows + 2.0))), layout="constrained")
    axes = figure.add_subplot()
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    figure.colorbar(image, ax=axes, label="share of the class's photos")
    axes.set_xticks(range(n_cols), result.predicted, rotation=90)
    axes.set_yticks(range(n_rows), [c.label for c in result.classes])
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(
        f"{result.about['arch']}: top-1 {_percent(result.top1)} on {result.images:,} images"
    )
    if n_cols <= 30:
        for (row, col), count in np.ndenumerate(result.matrix):
            colour = "white" if shares[row, col] > 0.5 else "black"
            axes.text(col, row, f"{count:,}", ha="center", va="center", color=colour)
    suffix = check_plot(path)
    try:
        files.atomic_write(path, lambda tmp: figure.savefig(tmp, format=suffix[1:]), suffix=suffix)
    except OSError as exc:
        raise CnnError(f"cannot write {path} ({exc.strerror or exc})") from exc
