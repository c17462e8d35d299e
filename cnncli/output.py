"""One output helper for every command: `--format table|json|jsonl|csv`.

A command hands over its result three ways (a JSON document, rich renderables, CSV rows) and
`emit` writes the one the user asked for. JSON, JSON Lines and CSV are for machines: no colour,
no progress, nothing else on stdout.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Sequence
from enum import Enum
from typing import Any

from rich.console import RenderableType

from cnncli.env import Environment

CsvRows = tuple[Sequence[str], Iterable[Sequence[Any]]]


class Format(str, Enum):
    """How a command prints its result."""

    table = "table"
    json = "json"
    jsonl = "jsonl"
    csv = "csv"


def emit(
    env: Environment,
    fmt: Format,
    document: Any,
    table: Callable[[], Iterable[RenderableType]],
    rows: Callable[[], CsvRows],
) -> None:
    """Write the result in format `fmt`; only the chosen representation is computed."""
    if fmt is Format.json:
        env.stdout.write(json.dumps(document, indent=2) + "\n")
    elif fmt is Format.jsonl:
        env.stdout.write(json_lines(document if isinstance(document, list) else [document]))
    elif fmt is Format.csv:
        header, body = rows()
        env.stdout.write(csv_lines([header, *body]))
    else:
        console = env.console()
        for renderable in table():
            console.print(renderable)
    env.stdout.flush()


def json_lines(items: Iterable[Any]) -> str:
    """JSON Lines: each item compact on a line of its own (a list document, one item a line)."""
    return "".join(json.dumps(item) + "\n" for item in items)


def csv_lines(rows: Iterable[Sequence[Any]]) -> str:
    """Rows as CSV text, each ending in a newline."""
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(rows)
    return text.getvalue()


def bar(fraction: float, width: int = 20) -> str:
    """A proportion as a bar of block characters, readable without colour."""
    filled = max(0.0, min(1.0, fraction)) * width
    full = int(filled)
    partial = " ▏▎▍▌▋▊▉"[int((filled - full) * 8)] if full < width else ""
    return ("█" * full + partial).ljust(width)


def human(number: float, unit: str = "") -> str:
    """1234567 -> '1.23M': counts and sizes at a glance; exact values stay in JSON."""
    for factor, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(number) >= factor:
            return f"{number / factor:.2f}{suffix}{unit}"
    return f"{number:g}{unit}"


def human_bytes(n: float) -> str:
    """Bytes in binary units, labelled like Keras's model table (MB = 2^20 bytes)."""
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if abs(n) >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"
