"""The streamed results of `cnn classify --format jsonl|csv`, and reading them back for `--resume`.

Every batch leaves as whole lines in one write and one flush (the run holds SIGINT and SIGTERM
meanwhile), so an interrupt falls between lines and everything written is on disk. Only a crash
can cut a write short; `--resume` then cuts off the torn last line before appending.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO, TextIO

from cnncli.classify import CSV_HEADER, ImageResult, rows
from cnncli.env import Environment
from cnncli.errors import CnnError
from cnncli.output import Format, csv_lines, json_lines

#: The formats written as they go, a batch at a time.
STREAMED = (Format.jsonl, Format.csv)


@contextmanager
def redirected(env: Environment, output: Path | None, append: bool) -> Iterator[Environment]:
    """`env`, with stdout going to `output` (replaced, or appended to) when one is given."""
    if output is None:
        yield env
        return
    with open(output, "a" if append else "w", encoding="utf-8", newline="") as stream:
        yield replace(env, stdout=stream, stdout_isatty=False)


class Writer:
    """Writes batches of results to a stream as JSON Lines or CSV, flushed per batch.

    CSV gets its header only at the start of a stream, so appending to a file adds rows alone.
    """

    def __init__(self, stream: TextIO, fmt: Format) -> None:
        self.stream = stream
        self.fmt = fmt
        self.header = fmt is Format.csv and _at_start(stream)

    def write(self, results: Sequence[ImageResult]) -> None:
        if self.fmt is Format.jsonl:
            text = json_lines(result.as_dict() for result in results)
        else:
            header, body = rows(results)
            text = csv_lines([header, *body] if self.header else body)
            self.header = False
        self.stream.write(text)
        self.stream.flush()


def _at_start(stream: TextIO) -> bool:
    """Whether nothing precedes what we write: an empty file, or a pipe or terminal."""
    try:
        return stream.tell() == 0
    except (OSError, ValueError):
        return True


def resume(path: Path, fmt: Format) -> frozenset[str]:
    """The images `path` already holds, after cutting off what a crash can leave incomplete:
    a torn last line and, in CSV, the last image's rows (that image is classified again)."""
    if not path.exists():
        return frozenset()
    with open(path, "rb+") as file:
        images, end = (_read_jsonl if fmt is Format.jsonl else _read_csv)(file, path)
        file.truncate(end)
    return frozenset(images)


def _read_jsonl(file: BinaryIO, path: Path) -> tuple[set[str], int]:
    """The images of whole lines, and the byte offset where they end."""
    images: set[str] = set()
    end = 0
    for number, line in enumerate(file, 1):
        if not line.endswith(b"\n"):
            break
        images.add(_image_of(line, path, number))
        end += len(line)
    return images, end


def _image_of(line: bytes, path: Path, number: int) -> str:
    try:
        image = json.loads(line)["image"]
    except (ValueError, TypeError, KeyError):
        image = None
    if not isinstance(image, str):
        raise CnnError(
            f"{path}:{number} is not a line of `cnn classify --format jsonl`; "
            "refusing to append to that file (choose another --output)"
        )
    return image


class _WholeLines:
    """The newline-terminated lines of a binary file as text, counting the bytes handed out."""

    def __init__(self, file: BinaryIO) -> None:
        self.file = file
        self.offset = 0
        self.exhausted = False

    def __iter__(self) -> Iterator[str]:
        for raw in self.file:
            if not raw.endswith(b"\n"):
                break
            self.offset += len(raw)
            yield raw.decode("utf-8")
        self.exhausted = True


def _read_csv(file: BinaryIO, path: Path) -> tuple[set[str], int]:
    """The images of every row but the last image's, and the byte offset where those end."""
    lines = _WholeLines(file)
    reader = csv.reader(iter(lines), strict=True)
    images: set[str] = set()
    last, start = None, 0
    try:
        header = next(reader, None)
        if header is not None and tuple(header) != CSV_HEADER:
            raise _not_ours(path, "its header differs")
        start = end = lines.offset
        for row in reader:
            if len(row) != len(CSV_HEADER):
                raise _not_ours(path, f"line {reader.line_num} has {len(row)} columns")
            if row[0] != last:
                if last is not None:
                    images.add(last)
                last, start = row[0], end
            end = lines.offset
    except csv.Error as exc:
        if not lines.exhausted:  # a quoted field cut by a crash ends the file; anything else
            raise _not_ours(path, str(exc)) from exc  # is not a file this command wrote
    return images, start


def _not_ours(path: Path, why: str) -> CnnError:
    return CnnError(
        f"{path} is not the CSV of `cnn classify` ({why}); "
        "refusing to append to that file (choose another --output)"
    )
