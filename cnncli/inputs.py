"""Turning IMAGE arguments (files, directories, globs, listed paths) into the images to classify.

Discovery is lazy, so a library of 100,000 photos starts classifying at once and never sits in
memory as a list. It never fails as a whole: an argument that names nothing becomes an entry
carrying its error, so it is reported beside the results of the others.
"""

from __future__ import annotations

import glob
import os
from collections import Counter
from collections.abc import Callable, Container, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain, takewhile
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from cnncli.errors import UsageError
from cnncli.images import photo_extensions

if TYPE_CHECKING:
    from PIL import Image

#: Told about each file or directory that discovery passes over, with the reason.
Skipped = Callable[[str, str], None]

#: Why discovery passes over a subdirectory without --recursive.
SUBFOLDER = "a directory (--recursive descends into it)"


@dataclass(frozen=True)
class Entry:
    """One image to classify, named as the file system spells it, or the reason it cannot be.

    Linux names are bytes: one that is not UTF-8 keeps them as `os.fsdecode`'s lone surrogates,
    so the name opens its file and round-trips through results files (`results_file` writes
    them losslessly; outputs that cannot encode them escape them)."""

    image: str
    error: str | None = None
    #: A photo already in memory (the Python API's arrays), named by `image`.
    photo: Image.Image | None = field(default=None, compare=False, repr=False)


def printable(path: str) -> str:
    """`path` with the bytes that are not UTF-8 (which `os.fsdecode` keeps as lone surrogates)
    written as `\\xNN`, for messages: text any stream can encode."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def is_image_name(path: str | Path) -> bool:
    """Whether a file's name says it is a photo (`images.PHOTO_FORMATS`)."""
    return Path(path).suffix.lower() in photo_extensions()


def _ignore(_path: str, _reason: str) -> None:
    pass


@dataclass(frozen=True)
class Inputs:
    """What the user named: IMAGE arguments, whether directories are descended, and a file
    (`-`: stdin) listing more arguments, one per line."""

    arguments: tuple[str, ...]
    recursive: bool = False
    files_from: str | None = None

    def entries(
        self,
        stdin: TextIO | None = None,
        skipped: Skipped = _ignore,
        exclude: Container[str] = frozenset(),
    ) -> Iterator[Entry]:
        """Every entry not named in `exclude`, lazily, in order: arguments, then listed paths."""
        for argument in chain(self.arguments, self._listed(stdin)):
            for entry in _argument(argument, self.recursive, skipped):
                if entry.image not in exclude:
                    yield entry

    def check(self) -> None:
        """Refuse, before any model loads, a `--files-from` that cannot be a list of paths.
        Anything readable is one: a file, a pipe, `<(ls)`, /dev/null (an empty list)."""
        listing = self.files_from
        if listing is None or listing == "-":
            return
        if os.path.isdir(listing):
            raise UsageError(f"--files-from {listing}: is a directory; give a file of paths")
        if not os.path.exists(listing):
            raise UsageError(f"--files-from {listing}: no such file")
        if not os.access(listing, os.R_OK):
            raise UsageError(f"--files-from {listing}: permission denied (make it readable)")

    def count(self, exclude: Container[str] = frozenset()) -> int | None:
        """How many entries `entries` gives, by a second walk of the same inputs; None when
        they are listed by stdin or a pipe, which can be read only once."""
        listing = self.files_from
        if listing is not None and (listing == "-" or not os.path.isfile(listing)):
            return None
        return sum(1 for _ in self.entries(exclude=exclude))

    def _listed(self, stdin: TextIO | None) -> Iterator[str]:
        if self.files_from == "-":
            yield from _lines(getattr(stdin, "buffer", stdin) or ())
        elif self.files_from is not None:
            with open(self.files_from, "rb") as listing:
                yield from _lines(listing)


class SkippedFolders:
    """The subfolders a walk without --recursive passed over, counted by the folder they are in,
    for one closing note rather than a line per folder."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def count(self, path: str, reason: str) -> None:
        """A `Skipped` callback: counts skipped subfolders, ignores everything else."""
        if reason == SUBFOLDER:
            self.counts[printable(os.path.dirname(path))] += 1

    def note(self) -> str | None:
        """The note `3 subfolders of photos skipped; add --recursive ...`, or None."""
        total = sum(self.counts.values())
        if not total:
            return None
        where = next(iter(self.counts)) if len(self.counts) == 1 else f"{len(self.counts)} folders"
        subfolders = "subfolder" if total == 1 else "subfolders"
        return f"{total:,} {subfolders} of {where} skipped; add --recursive to include them"


def _lines(listing: Iterable[bytes | str]) -> Iterator[str]:
    """The paths of a listing: one per line, line endings and a leading byte-order mark
    removed, blank lines ignored. Bytes are decoded as the file system decodes names
    (`os.fsdecode`), so a line that is not UTF-8 still opens the file it names."""
    for number, line in enumerate(listing):
        path = (os.fsdecode(line) if isinstance(line, bytes) else line).rstrip("\r\n")
        if number == 0:
            path = path.removeprefix("\ufeff")
        if path:
            yield path


def _argument(argument: str, recursive: bool, skipped: Skipped) -> Iterator[Entry]:
    """A file as given, a directory as its image files, a glob as its matching files."""
    if os.path.isdir(argument):
        found = False
        for entry in _directory(argument, recursive, skipped):
            found = True
            yield entry
        if not found:
            yield Entry(argument, "directory holds no image files")
    elif os.path.exists(argument) or os.path.islink(argument):
        yield Entry(argument)
    elif glob.has_magic(argument):
        matches = sorted(glob.glob(argument, recursive=recursive))
        files = [Entry(m) for m in matches if not os.path.isdir(m)]
        yield from files or [Entry(argument, _missing(argument, "no file matches"))]
    else:
        yield Entry(argument, _missing(argument, "no such file (check the path)"))


def _missing(path: str, reason: str) -> str:
    """Why a path or glob names nothing: a folder on its way the user may not read, a name that
    is not UTF-8 (a listing in another encoding), else `reason`."""
    denied = _denied_folder(path)
    if denied is not None:
        return f"permission denied: cannot read the folder {printable(denied)} (make it readable)"
    if printable(path) != path:
        return "no such file (and the name is not UTF-8: check the list's encoding)"
    return reason


def _denied_folder(path: str) -> str | None:
    """The outermost folder of `path`'s fixed head (its folders before any wildcard) that the
    user may not enter, or, for the last of a glob's, may not list."""
    parts = path.split(os.sep)[:-1]
    head = list(takewhile(lambda part: not glob.has_magic(part), parts))
    folders = [os.sep.join(head[: n + 1]) or os.sep for n in range(len(head))]
    for folder in folders:
        listed = glob.has_magic(path) and folder == folders[-1]
        needed = os.X_OK | (os.R_OK if listed else 0)
        if os.path.isdir(folder) and not os.access(folder, needed):
            return folder
    return None


def _directory(top: str, recursive: bool, skipped: Skipped) -> Iterator[Entry]:
    """The images of a directory in name order, descending into subdirectories (where their
    names sort) when `recursive`. The walk keeps a stack of listings rather than recursing, so
    a tree thousands of levels deep needs no Python recursion."""
    visited: set[tuple[int, int]] = set()
    stack = [_listing(top, visited, skipped)]
    while stack:
        child = next(stack[-1], None)
        if child is None:
            stack.pop()
        elif isinstance(child, Entry):  # a directory that cannot be listed
            yield child
        elif not _is_dir(child):
            if is_image_name(child.name):
                yield Entry(child.path)
            else:
                skipped(child.path, "not an image file, by its extension")
        elif recursive:
            stack.append(_listing(child.path, visited, skipped))
        else:
            skipped(child.path, SUBFOLDER)


def _listing(
    path: str, visited: set[tuple[int, int]], skipped: Skipped
) -> Iterator[os.DirEntry[str] | Entry]:
    """A directory's children in name order, or the one error entry saying why it cannot be
    listed. A directory is entered once, by its device and inode, so a symlink loop ends."""
    try:
        identity = os.stat(path)
        if (identity.st_dev, identity.st_ino) in visited:
            skipped(path, "already visited (a symlink loop or a second link to it)")
            return iter(())
        visited.add((identity.st_dev, identity.st_ino))
        with os.scandir(path) as listing:
            return iter(sorted(listing, key=lambda child: child.name))
    except OSError as exc:
        return iter([Entry(path, f"cannot list the directory ({exc.strerror or exc})")])


def _is_dir(child: os.DirEntry[str]) -> bool:
    """Whether a listed entry is a directory (following links); a vanished one is not."""
    try:
        return child.is_dir()
    except OSError:
        return False
