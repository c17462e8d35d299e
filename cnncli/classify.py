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
    from cnncli.loader import Weights


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


def document(classifier: Classifier, weights: Weights, results: Sequence[ImageResult]) -> dict:
    """The JSON document of `cnn classify`."""
    return {
        "arch": classifier.arch.name,
        "weights": str(weights),
        "engine": classifier.engine,
        "precision": classifier.precision,
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
