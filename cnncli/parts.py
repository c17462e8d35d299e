"""Results written as part files in a folder: the output of `cnn classify --ray --output DIR/`.

A run over millions of images cannot funnel every record through one file on the driver, so
each block of results becomes a part file written by a worker, in parallel, to a folder on a
file system every worker and the driver share. What makes that output exact:

- A part is written to a hidden temporary name beside it and renamed into place
  (`files.atomic_write`), so a reader never sees a torn part: a part is whole or absent.
- A part is named by a hash of the images it holds, in order. When Ray runs a write twice (a
  retried task, a worker killed after its rename), the second writes the same name with the
  same bytes, so no record is ever doubled.
- The driver holds a lock on the folder for the run and, since no writer of it can be alive
  then, removes the temporary files a killed writer left when it takes it.
- `--resume` reads the finished parts: their images are skipped, and error records are
  dropped from their parts first (each part rewritten whole, by rename), so those images are
  classified again and end up once.

Parts are JSON Lines or CSV exactly as `cnn classify --format jsonl|csv` writes them (each CSV
part with its header), or Parquet, whose rows hold the same fields. Parquet strings are UTF-8,
so a file name that is not UTF-8 is written there with `\\xNN` escapes (`inputs.printable`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnncli import files, results_file
from cnncli.choices import Format
from cnncli.classify import ImageResult, rows
from cnncli.errors import CnnError, UsageError
from cnncli.inputs import printable
from cnncli.output import csv_lines, json_lines

#: The lock file the driver holds while a run writes the folder.
LOCK = ".cnn-parts.lock"

#: The formats a part can be written in.
FORMATS = (Format.jsonl, Format.csv, Format.parquet)

#: Bytes of a done-key (`done_key`): 10 million images collide with odds of about 1e-25.
KEY_BYTES = 16


def is_folder(output: str | None) -> bool:
    """Whether `--output` names a folder of part files: spelt `DIR/`, or an existing folder."""
    return output is not None and (output.endswith(os.sep) or os.path.isdir(output))


def check(output: str | None, folder: bool, fmt: Format, on_ray: bool) -> None:
    """Refuse what only a cluster's run writes (a `folder` of parts, Parquet) anywhere else."""
    if folder and not on_ray:
        raise UsageError(
            f"{output}: --output DIR/ (part files) is written by --ray runs only; "
            "name a file, or add --ray"
        )
    if fmt is Format.parquet and not (folder and on_ray):
        raise UsageError("--format parquet writes part files: it needs --ray and --output DIR/")


def is_uri(name: str) -> bool:
    """Whether `name` is an object-store URI (`s3://...`, `gs://...`, `file://...`)."""
    return "://" in name


def done_key(image: str) -> bytes:
    """What identifies an image across runs: its resolved path (any spelling of a local file is
    the same image, as for `--resume` of one file), or its URI; hashed to a fixed size so the
    keys of ten million images fit in an array. Names are taken through `printable`, the form a
    Parquet part can hold, so every format reads back the keys it was given."""
    name = image if is_uri(image) else results_file.resolved(image)
    return hashlib.blake2b(printable(name).encode(), digest_size=KEY_BYTES).digest()


def done_keys(images: Iterable[str]) -> np.ndarray:
    """`done_key` of each image, once each, as a sorted array that `np.isin` searches."""
    return np.unique(np.array([done_key(i) for i in images], dtype=f"S{KEY_BYTES}"))


def part_name(images: Sequence[str], fmt: Format) -> str:
    """A part's file name, from the images it holds: the same block always gets the same name."""
    digest = hashlib.blake2b(digest_size=12)
    for image in images:
        digest.update(os.fsencode(image) + b"\0")
    return f"part-{digest.hexdigest()}.{fmt.value}"


@dataclass(frozen=True)
class Part:
    """One part as written: its name, its images, and the failed ones with their errors."""

    name: str
    images: int
    errors: tuple[tuple[str, str], ...]


def write(folder: Path, fmt: Format, results: Sequence[ImageResult]) -> Part:
    """Write `results` as one part of `folder`, atomically; safe to repeat (see the module)."""
    name = part_name([r.image for r in results], fmt)
    if fmt is Format.parquet:
        files.atomic_write(folder / name, lambda tmp: _write_parquet(tmp, results))
    else:
        data = encode(fmt, results)
        files.atomic_write(folder / name, lambda tmp: tmp.write_bytes(data))
    failed = tuple((r.image, r.error) for r in results if r.error is not None)
    return Part(name, len(results), failed)


def encode(fmt: Format, results: Sequence[ImageResult]) -> bytes:
    """A JSON Lines or CSV part: the bytes `results_file.Writer` writes for these results."""
    if fmt is Format.jsonl:
        text = json_lines(r.as_dict() for r in results)
    else:
        header, body = rows(results)
        text = csv_lines([header, *body])
    return text.encode(results_file.ENCODING, results_file.ERRORS)


def _write_parquet(path: Path, results: Sequence[ImageResult]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist([_parquet_row(r) for r in results], schema=parquet_schema())
    pq.write_table(table, path)


def parquet_schema() -> Any:
    """Columns of a Parquet part: the fields of `ImageResult.as_dict()`."""
    import pyarrow as pa

    prediction = pa.struct(
        [
            ("rank", pa.int64()),
            ("index", pa.int64()),
            ("wnid", pa.string()),
            ("label", pa.string()),
            ("score", pa.float64()),
        ]
    )
    return pa.schema(
        [
            ("image", pa.string()),
            ("model", pa.string()),
            ("predictions", pa.list_(prediction)),
            ("error", pa.string()),
        ]
    )


def _parquet_row(result: ImageResult) -> dict[str, Any]:
    predictions = [p.as_dict() for p in result.predictions] if result.error is None else None
    return {
        "image": printable(result.image),
        "model": result.model,
        "predictions": predictions,
        "error": result.error,
    }


class PartsFolder:
    """The output folder of a run: locked, cleared of dead writers' temporary files, and with
    `resume`, read back (its held images are `done`, its error records dropped). An image is
    `in` it when a finished part holds it."""

    def __init__(self, folder: Path, fmt: Format) -> None:
        self.folder = folder
        self.fmt = fmt
        self.done = np.array([], dtype=f"S{KEY_BYTES}")

    def __contains__(self, image: object) -> bool:
        return isinstance(image, str) and bool(np.isin(done_key(image), self.done))

    def parts(self) -> list[Path]:
        """The finished parts of this format, in name order."""
        return sorted(self.folder.glob(f"part-*.{self.fmt.value}"))

    def resume(self, model: str) -> None:
        """Take the held images as done and drop the error records (each part rewritten by
        rename, or removed when it held errors alone), so those images are classified again;
        refused, before any part changes, when a part holds another model than `model` (the
        run's tag), as `--resume` of one file is (`results_file.Output.resume`)."""
        found = self.parts()
        if others := sorted(set().union(*(self.models(part) for part in found)) - {model}):
            raise CnnError(
                f"{self.folder}: holds results of {', '.join(others)}, not of {model}; --resume "
                "adds to a run of the same model: rerun with that model or choose another --output"
            )
        held: list[str] = []
        for part in found:
            if self.fmt is Format.parquet:
                held.extend(_parquet_resume(part))
            else:
                held.extend(_text_resume(part, self.fmt))
        self.done = done_keys(held)

    def models(self, part: Path) -> set[str]:
        """The models whose results a finished part holds."""
        if self.fmt is Format.parquet:
            import pyarrow.parquet as pq

            return set(pq.read_table(part, columns=["model"])["model"].to_pylist())
        with part.open("rb") as file:
            return {record.model for record in results_file.records(file, part, self.fmt)[1]}


def _text_resume(part: Path, fmt: Format) -> list[str]:
    """A JSON Lines or CSV part's held images; its error records dropped (`PartsFolder.resume`).
    The records kept are copied as their bytes: predictions are never parsed and re-written."""
    with part.open("rb") as file:
        start, found = results_file.records(file, part, fmt)
        records = list(found)
    kept = [r for r in records if not r.failed]
    if len(kept) < len(records):
        data = results_file.CSV_HEADER_LINE[:start] + b"".join(r.raw for r in kept)
        _replace(part, (lambda tmp: tmp.write_bytes(data)) if kept else None)
    return list(dict.fromkeys(r.image for r in kept))  # a CSV image spans one row per rank


def _parquet_resume(part: Path) -> list[str]:
    """`_text_resume` for a Parquet part."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(part, schema=parquet_schema())
    kept = table.filter(pc.is_null(table["error"]))
    if kept.num_rows < table.num_rows:
        _replace(part, (lambda tmp: pq.write_table(kept, tmp)) if kept.num_rows else None)
    return kept["image"].to_pylist()


def _replace(part: Path, write: Callable[[Path], None] | None) -> None:
    """Rewrite `part` by rename with what `write` writes; remove it when nothing is left."""
    if write is None:
        part.unlink()
    else:
        files.atomic_write(part, write)


@contextlib.contextmanager
def opened(folder: Path, fmt: Format, resume: bool, model: str) -> Iterator[PartsFolder]:
    """`folder` ready for a run of `model` (its tag): created, locked for the block, temporary
    files of dead writers removed; refused when it holds parts and `resume` is not asked for (a
    run never deletes results it did not write), or holds another model's."""
    if fmt not in FORMATS:
        raise UsageError(
            f"{folder}: part files are jsonl, csv or parquet; pass --format jsonl, csv or parquet"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = (folder / LOCK).open("a+b")
    except OSError as exc:
        raise CnnError(f"{folder}: cannot write parts there ({exc.strerror or exc})") from exc
    with lock:
        results_file.lock(lock, folder / LOCK)
        for tmp in folder.glob(".part-*.tmp"):
            tmp.unlink(missing_ok=True)
        destination = PartsFolder(folder, fmt)
        if resume:
            destination.resume(model)
        elif destination.parts():
            raise CnnError(
                f"{folder}: holds the parts of an earlier run; pass --resume to continue it, "
                "or choose an empty folder"
            )
        yield destination
