"""`cnn models`: the registry as a table, read from the records without building anything."""

from __future__ import annotations

from rich import box
from rich.console import RenderableType
from rich.table import Table

from cnncli.output import CsvRows, human
from cnncli.registry import ARCHS, Arch

COLUMNS = (
    "arch",
    "input_size",
    "preprocessing",
    "params",
    "top1",
    "top5",
    "weights_mb",
    "family",
    "year",
    "pretrained",
)


def _record(arch: Arch) -> dict[str, object]:
    return {
        "arch": arch.name,
        "input_size": arch.input_size,
        "preprocessing": arch.preprocessing,
        "params": arch.params,
        "top1": arch.top1,
        "top5": arch.top5,
        "weights_mb": round(arch.weights_mb, 1),
        "family": arch.family,
        "year": arch.year,
        "pretrained": arch.pretrained,
    }


def document() -> list[dict[str, object]]:
    """The JSON listing: one object per architecture."""
    return [_record(arch) for arch in ARCHS.values()]


def render() -> list[RenderableType]:
    table = Table(box=box.SIMPLE_HEAD, title=f"{len(ARCHS)} architectures", title_justify="left")
    for column, justify in (
        ("name", "left"),
        ("input", "right"),
        ("preproc", "left"),
        ("params", "right"),
        ("top-1", "right"),
        ("weights MB", "right"),
        ("family", "left"),
        ("year", "right"),
    ):
        table.add_column(column, justify=justify, no_wrap=column == "name")  # type: ignore[arg-type]
    for arch in ARCHS.values():
        top1 = f"{arch.top1:.1f}%" if arch.top1 is not None else "-"
        mb = f"{arch.weights_mb:.1f}" if arch.pretrained else "(none)"
        table.add_row(
            arch.name,
            f"{arch.input_size}px",
            arch.preprocessing,
            human(arch.params),
            top1,
            mb,
            arch.family,
            str(arch.year),
        )
    return [table]


def rows() -> CsvRows:
    return COLUMNS, [[record[c] for c in COLUMNS] for record in document()]
