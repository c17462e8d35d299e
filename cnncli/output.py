"""One output helper for every command: `--format table|json|jsonl|csv`.

A command hands over its result three ways (a JSON document, rich renderables, CSV rows) and
`emit` writes the one the user asked for. JSON, JSON Lines and CSV are for machines: no colour,
no progress, nothing else on stdout.

Whatever a result holds, writing it never fails: JSON is strict (`allow_nan=False`; names that are
not valid Unicode, such as a file name with byte 0xff, become JSON's own `\\u` escapes), and text a
stream cannot encode (`café` on an ASCII stdout, that byte on any stdout) is written as Python's
backslash escapes (`caf\\xe9`; a name's byte that is not UTF-8 as `\\xff`) by `Escaped`.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any, TextIO

from rich.console import RenderableType

from cnncli.choices import Format
from cnncli.env import Environment
from cnncli.errors import CnnError, UsageError

CsvRows = tuple[Sequence[str], Iterable[Sequence[Any]]]


def emit(
    env: Environment,
    fmt: Format,
    document: Any,
    table: Callable[[], Iterable[RenderableType]],
    rows: Callable[[], CsvRows],
) -> None:
    """Write the result in format `fmt`; only the chosen representation is computed."""
    if fmt not in Format.printed():
        raise UsageError(
            f"--format {fmt.value} writes part files: only `cnn classify --ray --output DIR/` "
            f"takes it (choose {', '.join(f.value for f in Format.printed())})"
        )
    stdout = Escaped(env.stdout)
    if fmt is Format.json:
        stdout.write(to_json(document, indent=2) + "\n")
    elif fmt is Format.jsonl:
        stdout.write(json_lines(document if isinstance(document, list) else [document]))
    elif fmt is Format.csv:
        header, body = rows()
        stdout.write(csv_lines([header, *body]))
    else:
        console = replace(env, stdout=stdout).console()
        for renderable in table():
            console.print(renderable)
    stdout.flush()


def to_json(value: Any, indent: int | None = None) -> str:
    """The one place JSON is written: strict JSON, so a NaN or infinity that reached a result
    by mistake is an error here rather than a `NaN` token that no JSON reader accepts."""
    try:
        return json.dumps(value, indent=indent, allow_nan=False)
    except ValueError as exc:
        raise CnnError(
            f"the result holds NaN or infinity, which JSON cannot represent ({exc}); "
            "broken weights are the usual cause (check --weights)"
        ) from exc


def json_lines(items: Iterable[Any]) -> str:
    """JSON Lines: each item compact on a line of its own (a list document, one item a line)."""
    return "".join(to_json(item) + "\n" for item in items)


def csv_lines(rows: Iterable[Sequence[Any]]) -> str:
    """Rows as CSV text, each ending in a newline."""
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(rows)
    return text.getvalue()


class Escaped(io.TextIOBase):
    """A text stream over `target` that writes what `target` cannot encode as backslash escapes
    instead of raising UnicodeEncodeError, so one odd file name never loses a run's output.
    Our own files (UTF-8 with surrogateescape) encode everything and pass through unchanged."""

    def __init__(self, target: TextIO) -> None:
        super().__init__()
        self.target = target

    @property
    def encoding(self) -> str:  # type: ignore[override]
        """The target's, so rich draws ASCII boxes on an ASCII stream."""
        return getattr(self.target, "encoding", None) or "utf-8"

    def write(self, text: str) -> int:
        self.target.write(escaped(text, self.target))
        return len(text)

    def flush(self) -> None:
        self.target.flush()


def escaped(text: str, stream: TextIO) -> str:
    """`text`, with the characters `stream` cannot encode as backslash escapes."""
    encoding = getattr(stream, "encoding", None)
    if not encoding:  # an in-memory stream takes any text
        return text
    try:
        text.encode(encoding, getattr(stream, "errors", None) or "strict")
    except UnicodeEncodeError:
        return text.encode(encoding, ESCAPE).decode(encoding)
    return text


def _escape(error: UnicodeError) -> tuple[str, int]:
    """Python's backslash escapes, except that a lone surrogate U+DC80-U+DCFF (a byte of a file
    name that was not UTF-8, as `os.fsdecode` keeps it) is written as that byte, `\\xNN`."""
    assert isinstance(error, UnicodeEncodeError)
    text = error.object[error.start : error.end]
    escapes = (
        f"\\x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF else ascii(c)[1:-1] for c in text
    )
    return "".join(escapes), error.end


#: The codec error handler of `escaped`.
ESCAPE = "cnncli.escape"
codecs.register_error(ESCAPE, _escape)


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
