"""Where `cnn classify` writes its results: stdout, or `--output FILE`, which `--resume` reads back.

FILE may be anything the user typed, so:
- It is refused before anything opens it for writing when it is a photo: named like one, being
  one (by its content), or the same file as an IMAGE argument (device and inode: any spelling,
  symlink or hard link). Discovery that meets it later (a glob `dir/*`, a listing) skips it.
- It is opened without truncating and locked (flock, non-blocking) for the whole run, so a second
  cnn on it stops with one line and leaves it alone.
- `--resume` changes it only when it is recognisably cnn's (every line a record of `--format
  jsonl`, or the CSV header and rows) and every record is the same model's (each names the
  model that wrote it: a file never mixes two models' answers), and cuts only a torn tail a
  crash can leave. Images whose
  record is an error are classified again: the file is first copied without those records to a
  temporary file that is renamed over it, so a crash leaves one whole file, never two records
  for one image.
- Every batch leaves as whole lines in one write and one flush (the run holds SIGINT and SIGTERM
  meanwhile), so an interrupt falls between lines.

Names that are not valid UTF-8 (a file named with byte 0xff) are kept losslessly: JSON Lines
holds them as JSON's `\\udcff` escapes, CSV as the name's own bytes (UTF-8 with
surrogateescape), and both read back to the same names, so `--resume` never redoes them.
"""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO, TextIO

from PIL import Image

from cnncli.choices import Format
from cnncli.classify import CSV_HEADER, ImageResult, rows
from cnncli.env import Environment
from cnncli.errors import CnnError, UsageError
from cnncli.inputs import Entry, Skipped, is_image_name
from cnncli.output import csv_lines, escaped, json_lines

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, and runs on one file are not serialised
    fcntl = None  # type: ignore[assignment]

#: The formats written as they go, a batch at a time.
STREAMED = (Format.jsonl, Format.csv)

#: Results files are UTF-8; bytes of names that are not UTF-8 pass through as they are.
ENCODING, ERRORS = "utf-8", "surrogateescape"

#: How each line of `--format jsonl` begins, and the first line of `--format csv`.
JSONL_START = b'{"image": '
CSV_HEADER_LINE = csv_lines([CSV_HEADER]).encode()


def resolved(image: str) -> str:
    """One name per file however it is spelled (relative, absolute, `./`, through symlinks)."""
    return os.path.realpath(image)


@dataclass(frozen=True)
class Record:
    """One whole record of a results file, as its bytes: a JSON line, or a CSV row (one per
    rank, so an image spans several)."""

    image: str
    model: str
    failed: bool
    raw: bytes


@dataclass
class Contents:
    """What `--resume` found: the images held (resolved), the error records to retry, where the
    records begin (after the CSV header) and where those to keep end."""

    start: int = 0
    keep: int = 0
    held: set[str] = field(default_factory=set)
    failed: int = 0
    models: set[str] = field(default_factory=set)

    def add(self, record: Record) -> None:
        if record.failed:
            self.failed += 1
        else:
            self.held.add(resolved(record.image))


class Output:
    """Stdout, or `--output FILE` opened and locked for the run (see the module's rules).

    It is also the set of images not to classify: `image in output` when FILE holds it (by
    resolved path) or is it; `fresh` filters discovery by that and counts what it skips.
    """

    def __init__(self, path: Path | None = None, file: BinaryIO | None = None) -> None:
        self.path = path
        self.file = file
        #: FILE's device and inode, kept: the background count asks after FILE is closed.
        self.identity = os.fstat(file.fileno()) if file is not None else None
        self.contents = Contents()
        self.already: set[str] = set()

    @property
    def regular(self) -> bool:
        """Whether FILE is a regular file (not a device or pipe such as /dev/null)."""
        return self.identity is not None and stat.S_ISREG(self.identity.st_mode)

    def __contains__(self, image: object) -> bool:
        return isinstance(image, str) and (
            resolved(image) in self.contents.held or self.is_itself(image)
        )

    def is_itself(self, image: str) -> bool:
        """Whether `image` is FILE, by device and inode."""
        if self.identity is None:
            return False
        try:
            return os.path.samestat(os.stat(image), self.identity)
        except OSError:
            return False

    def fresh(self, entries: Iterable[Entry], skipped: Skipped) -> Iterator[Entry]:
        """The entries to classify: not FILE itself, which a glob or a listing can name, nor the
        images FILE holds, which are counted in `already` (once each, however spelled)."""
        for entry in entries:
            if self.is_itself(entry.image):
                skipped(entry.image, "it is the --output file")
            elif (key := resolved(entry.image)) in self.contents.held:
                self.already.add(key)
            else:
                yield entry

    def resume(self, fmt: Format, model: str) -> None:
        """Read FILE's records, refusing a file cnn did not write or one holding another
        model's results (`model` is the run's tag); nothing changes yet."""
        if self.file is None or self.path is None:
            return
        if not self.regular:
            raise CnnError(f"{self.path}: not a regular file, so --resume cannot read it back")
        self.contents = _scan(self.file, self.path, fmt)
        if others := sorted(self.contents.models - {model}):
            raise CnnError(
                f"{self.path}: holds results of {', '.join(others)}, not of {model}; --resume "
                "adds to a run of the same model: rerun with that model or choose another --output"
            )

    @contextmanager
    def writing(self, env: Environment, fmt: Format, resume: bool) -> Iterator[Environment]:
        """`env` with stdout going to FILE: truncated, or with `--resume` stripped of error
        records and a torn tail. Called once the model has loaded, so a run that cannot start
        leaves FILE as it was."""
        if self.file is None:
            yield env
            return
        if self.regular:
            if resume and self.contents.failed:
                self._rewrite(fmt)
            else:
                self.file.truncate(self.contents.keep)
        with open(
            self.file.fileno(), "a", encoding=ENCODING, errors=ERRORS, newline="", closefd=False
        ) as stream:
            yield replace(env, stdout=stream, stdout_isatty=False)

    def _rewrite(self, fmt: Format) -> None:
        """Replace FILE by a copy of the records to keep minus the error records, written beside
        it, synced and locked before it is renamed over FILE: a crash leaves the old file or the
        new one, and the lock never lapses. A symlinked FILE keeps its link."""
        assert self.file is not None and self.path is not None
        real = os.path.realpath(self.path)
        mode = stat.S_IMODE(os.fstat(self.file.fileno()).st_mode)
        folder, name = os.path.split(real)
        try:
            fd, temporary = tempfile.mkstemp(prefix=f".{name}.", dir=folder)
        except OSError as exc:
            raise CnnError(
                f"{self.path}: cannot rewrite it without its error records "
                f"({exc.strerror}); make its folder writable"
            ) from exc
        copy = open(fd, "r+b")  # noqa: SIM115 (it replaces self.file for the rest of the run)
        try:
            lock(copy, self.path)
            self._copy_kept(copy, fmt)
            os.fsync(fd)
            os.chmod(temporary, mode)
            os.replace(temporary, real)
        except BaseException:
            copy.close()
            with suppress(OSError):
                os.unlink(temporary)
            raise
        self.file.close()
        self.file, self.identity = copy, os.fstat(copy.fileno())

    def _copy_kept(self, copy: BinaryIO, fmt: Format) -> None:
        assert self.file is not None and self.path is not None
        start, found = records(self.file, self.path, fmt)
        copy.write(CSV_HEADER_LINE[:start])  # the header, when there is one
        end = start
        for record in found:
            end += len(record.raw)
            if end > self.contents.keep:
                break
            if not record.failed:
                copy.write(record.raw)
        copy.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


@contextmanager
def opened(
    output: Path | None, fmt: Format, resume: bool, model: str, arguments: Sequence[str] = ()
) -> Iterator[Output]:
    """The results' destination for a run of `model` (its tag): stdout, or FILE checked, locked
    and, with `resume`, read back. The lock is held until the block ends."""
    if output is None:
        yield Output()
        return
    _refuse_photo(output, arguments)
    destination = Output(output, _open_locked(output))
    try:
        if resume:
            destination.resume(fmt, model)
        yield destination
    finally:
        destination.close()


def _refuse_photo(output: Path, arguments: Sequence[str]) -> None:
    """Refuse an --output that would overwrite a photo: named like one, one of the IMAGE
    arguments (however spelled or linked), or an image by its content."""
    if is_image_name(output):
        raise UsageError(
            f"{output}: --output names an image file (by its extension); "
            "write results to a .jsonl, .csv or .json file"
        )
    try:
        existing = os.stat(output)
    except OSError:
        return  # nothing there yet (or unreachable: opening it says why)
    for argument in arguments:
        with suppress(OSError):
            if os.path.samestat(os.stat(argument), existing):
                raise UsageError(
                    f"{output}: --output is the input {argument}; choose another --output"
                )
    if stat.S_ISREG(existing.st_mode) and _is_image(output):
        raise UsageError(
            f"{output}: this file is an image; refusing to overwrite it with results "
            "(choose another --output)"
        )


def _is_image(path: Path) -> bool:
    """Whether Pillow recognises the file (it reads the header only)."""
    try:
        with Image.open(path):
            return True
    except Exception:  # every way of not being an image
        return False


def _open_locked(path: Path) -> BinaryIO:
    """FILE for reading and writing: created if absent, never truncated here, locked when it is
    a regular file (a device such as /dev/null is shared by all). A run that rewrote FILE renamed
    a new file into place, so a lock won on the file the name used to lead to is worthless: it
    is taken again until it is on the file the name leads to."""
    while True:
        try:
            file = open(path, "a+b")  # noqa: SIM115 (held for the run)
        except OSError as exc:
            raise CnnError(
                f"{path}: cannot write the results there ({exc.strerror}); choose another --output"
            ) from exc
        try:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                return file
            lock(file, path)
            if _leads_to(path, file):
                return file
        except BaseException:
            file.close()
            raise
        file.close()


def _leads_to(path: Path, file: BinaryIO) -> bool:
    """Whether the name `path` still leads to the open `file`."""
    try:
        return os.path.samestat(os.stat(path), os.fstat(file.fileno()))
    except OSError:  # renamed away meanwhile
        return False


def lock(file: BinaryIO, path: Path) -> None:
    """Hold `file` (which stands for `path`: a results file, or the lock file of a folder of
    part files) for this process, or stop: another cnn is writing there."""
    if fcntl is None:
        return
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        raise CnnError(
            f"{path}: another cnn is writing this file; wait for it to finish or "
            "choose another --output"
        ) from exc


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
        self.stream.write(escaped(text, self.stream))
        self.stream.flush()


def _at_start(stream: TextIO) -> bool:
    """Whether nothing precedes what we write: an empty file, or a pipe or terminal."""
    try:
        return stream.tell() == 0
    except (OSError, ValueError):
        return True


def _scan(file: BinaryIO, path: Path, fmt: Format) -> Contents:
    """FILE's images and error records, and where to cut: after the last whole line and, in
    CSV, before the last image's rows, which a crash can leave short of `--top` rows."""
    start, found = records(file, path, fmt)
    contents = Contents(start, start)
    end, last = start, None
    for record in found:
        contents.models.add(record.model)  # the CSV rows cut to be redone were its answers too
        if fmt is Format.jsonl or last is None or record.image != last.image:
            if last is not None:
                contents.add(last)
                contents.keep = end
            last = record
        end += len(record.raw)
    if last is not None and fmt is Format.jsonl:
        contents.add(last)
        contents.keep = end
    return contents


def records(file: BinaryIO, path: Path, fmt: Format) -> tuple[int, Iterator[Record]]:
    """Where FILE's records begin, and its whole records from there; raises when FILE is not
    cnn's, including a last line that no crash of cnn could have left. What `--resume` reads,
    here and in each part file of a cluster's run (`parts`)."""
    file.seek(0)
    if fmt is Format.jsonl:
        return 0, _jsonl_records(file, path)
    first = file.readline()
    if first == CSV_HEADER_LINE:
        return len(first), _csv_records(file, path)
    if first.endswith(b"\n") or not CSV_HEADER_LINE.startswith(first):
        raise _not_ours(path, fmt, "its first line is not the header")
    return 0, iter(())  # empty, or a header cut short by a crash


def _jsonl_records(file: BinaryIO, path: Path) -> Iterator[Record]:
    for number, line in enumerate(file, 1):
        if not line.endswith(b"\n"):
            if not (line.startswith(JSONL_START) or JSONL_START.startswith(line)):
                raise _not_ours(path, Format.jsonl, f"line {number} is not a record")
            return
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not _is_result(record):
            raise _not_ours(path, Format.jsonl, f"line {number} is not a record")
        yield Record(record["image"], record["model"], "error" in record, line)


def _is_result(record: object) -> bool:
    """Whether a parsed line is an `ImageResult.as_dict()`: an image and its model, with
    predictions or an error."""
    return (
        isinstance(record, dict)
        and isinstance(record.get("image"), str)
        and isinstance(record.get("model"), str)
        and (isinstance(record.get("predictions"), list) or isinstance(record.get("error"), str))
    )


class _WholeLines:
    """The newline-terminated lines of a binary file as text, keeping the bytes handed out since
    the last `take` and the unterminated tail a crash can leave."""

    def __init__(self, file: BinaryIO) -> None:
        self.file = file
        self.pending: list[bytes] = []
        self.tail = b""
        self.exhausted = False

    def __iter__(self) -> Iterator[str]:
        for raw in self.file:
            if not raw.endswith(b"\n"):
                self.tail = raw
                break
            self.pending.append(raw)
            yield raw.decode(ENCODING, ERRORS)
        self.exhausted = True

    def take(self) -> bytes:
        raw = b"".join(self.pending)
        self.pending.clear()
        return raw


def _csv_records(file: BinaryIO, path: Path) -> Iterator[Record]:
    lines = _WholeLines(file)
    reader = csv.reader(iter(lines), strict=True)
    try:
        for row in reader:
            if len(row) != len(CSV_HEADER):
                raise _not_ours(path, Format.csv, f"line {reader.line_num} has {len(row)} columns")
            yield Record(row[0], row[1], row[-1] != "", lines.take())
    except csv.Error as exc:
        if not lines.exhausted:  # a quoted field cut by a crash ends the file; anything else
            raise _not_ours(path, Format.csv, str(exc)) from exc  # is not a file cnn wrote
    torn = (lines.take() + lines.tail).decode(ENCODING, ERRORS)
    if len(next(csv.reader(io.StringIO(torn)), [])) > len(CSV_HEADER):
        raise _not_ours(path, Format.csv, "its last line has too many columns")


def _not_ours(path: Path, fmt: Format, why: str) -> CnnError:
    return CnnError(
        f"{path}: not the results of `cnn classify --format {fmt.value}` ({why}); "
        "refusing to append to it (choose another --output)"
    )
