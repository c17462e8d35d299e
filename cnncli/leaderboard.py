"""What `cnn train` prints: each architecture's trained model side by side, best first.

Val top-1 (of the best epoch, the one kept), test top-1 where DATA has a test folder, how long
the model takes per image, its parameters and its file's size, and where its bundle is: the
figures that decide which model to use, on the user's own data. Each row is read from the
bundle's metadata, so a resumed run shows the models an earlier run finished as well.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich import box
from rich.console import RenderableType
from rich.table import Table

from cnncli import bundle
from cnncli.inputs import printable
from cnncli.output import CsvRows, human, human_bytes


@dataclass(frozen=True)
class Outcome:
    """One architecture's training, as its bundle records it."""

    arch: str
    bundle: str
    status: str  # "complete", or "interrupted" (the best epoch before the stop)
    val_top1: float | None
    test_top1: float | None
    best_phase: str | None
    best_epoch: int | None
    epochs: int
    ms_per_image: float | None
    params: int
    file_bytes: int
    skipped: int

    @classmethod
    def of(cls, folder: Path, metadata: Mapping[str, Any]) -> Outcome:
        """The row of the bundle in `folder`, whose metadata is `metadata`."""
        run = metadata["training"]
        best = run["best"] or {}
        return cls(
            arch=metadata["arch"],
            bundle=printable(str(folder)),
            status=run["status"],
            val_top1=run["val_top1"],
            test_top1=run["test_top1"],
            best_phase=best.get("phase"),
            best_epoch=best.get("epoch"),
            epochs=len(run["history"]),
            ms_per_image=run["ms_per_image"],
            params=int(metadata["params"]),
            file_bytes=(folder / bundle.MODEL).stat().st_size,
            skipped=len(run["skipped"]),
        )


def ranked(outcomes: Sequence[Outcome]) -> list[Outcome]:
    """Best val top-1 first (a model with none, interrupted before an epoch, last)."""
    return sorted(outcomes, key=lambda o: -(o.val_top1 if o.val_top1 is not None else -1))


def document(data: Path, outcomes: Sequence[Outcome]) -> dict[str, Any]:
    return {"data": printable(str(data)), "models": [asdict(o) for o in ranked(outcomes)]}


HEADER = (
    "arch",
    "val top-1",
    "test top-1",
    "best epoch",
    "ms/image",
    "params",
    "size",
    "bundle",
)


def render(outcomes: Sequence[Outcome]) -> list[RenderableType]:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for name in HEADER:
        table.add_column(name, justify="left" if name in ("arch", "bundle") else "right")
    for outcome in ranked(outcomes):
        table.add_row(*_cells(outcome))
    return [table]


def _cells(o: Outcome) -> tuple[str, ...]:
    best = f"{o.best_phase} {o.best_epoch}" if o.best_epoch is not None else "-"
    status = "" if o.status == "complete" else f" ({o.status})"
    return (
        o.arch,
        _percent(o.val_top1),
        _percent(o.test_top1),
        f"{best} of {o.epochs}",
        f"{o.ms_per_image:.1f}" if o.ms_per_image is not None else "-",
        human(o.params),
        human_bytes(o.file_bytes),
        o.bundle + status,
    )


def _percent(value: float | None) -> str:
    return f"{value:.1%}" if value is not None else "-"


def rows(outcomes: Sequence[Outcome]) -> CsvRows:
    fields = list(Outcome.__dataclass_fields__)
    return fields, [[getattr(o, name) for name in fields] for o in ranked(outcomes)]
