"""What `cnn classify` answers for each image, and its views: the JSON document, the tables and
the CSV rows (the classifying itself is `pipeline.stream`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from cnncli.labels import Prediction
from cnncli.output import CsvRows, bar

if TYPE_CHECKING:  # the views need no engine loaded
    from cnncli.engines import Classifier


@dataclass(frozen=True)
class ImageResult:
    """The top predictions for one image, or why it could not be classified, and the model
    that answered (`networks.tag`: what `--resume` checks before appending to a file)."""

    image: str
    model: str
    predictions: tuple[Prediction, ...] = ()
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        head = {"image": self.image, "model": self.model}
        if self.error is not None:
            return {**head, "error": self.error}
        return {**head, "predictions": [p.as_dict() for p in self.predictions]}


def document(classifier: Classifier, results: Sequence[ImageResult]) -> dict:
    """The JSON document of `cnn classify`."""
    return {
        "arch": classifier.arch.name,
        "weights": classifier.network.weights,
        "engine": classifier.engine,
        "precision": classifier.precision,
        "results": [r.as_dict() for r in results],
    }


def render(results: Sequence[ImageResult]) -> list[RenderableType]:
    """Per image: a table of rank, label, wnid (ImageNet's classes have one, a trained model's
    own do not) and score with a bar, or its error."""
    out: list[RenderableType] = []
    for result in results:
        if result.error is not None:
            out.append(Text(f"{result.image}: error: {result.error}", style="red"))
            continue
        wnids = any(p.wnid for p in result.predictions)
        table = Table(title=result.image, title_justify="left", box=box.SIMPLE_HEAD)
        for column, justify in (
            ("#", "right"),
            ("label", "left"),
            *([("wnid", "left")] if wnids else []),
            ("score", "right"),
            ("", "left"),
        ):
            table.add_column(column, justify=justify)  # type: ignore[arg-type]
        for p in result.predictions:
            wnid = [p.wnid or ""] if wnids else []
            table.add_row(str(p.rank), p.label, *wnid, f"{p.score:.4f}", bar(p.score))
        out.append(table)
    return out


#: The columns of `--format csv`; the first names the image, the second the model.
CSV_HEADER = ("image", "model", "rank", "index", "wnid", "label", "score", "error")


def rows(results: Sequence[ImageResult]) -> CsvRows:
    """CSV: one row per (image, rank) in input order; a failed image is one row with its error."""
    return CSV_HEADER, [row for result in results for row in _rows(result)]


def _rows(r: ImageResult) -> list[tuple[Any, ...]]:
    if r.error is not None:
        return [(r.image, r.model, "", "", "", "", "", r.error)]
    return [
        (r.image, r.model, p.rank, p.index, p.wnid or "", p.label, f"{p.score:.6g}", "")
        for p in r.predictions
    ]
