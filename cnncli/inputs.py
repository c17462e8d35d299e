"""Turning IMAGE arguments (files, directories, globs, listed paths) into the images to classify.

Discovery is lazy, so a library of 100,000 photos starts classifying at once and never sits in
memory as a list. It never fails as a whole: an argument that names nothing becomes an entry
carrying its error, so it is reported beside the results of the others.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import TextIO

from cnncli.images import photo_extensions

#: Told about each file or directory that discovery passes over, with the reason.
Skipped = Callable[[str, str], None]


@dataclass(frozen=True)
class Entry:
    """One image to classify, as the user will see its name, or the reason it cannot be."""

    image: str
    error: str | None = None


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
        exclude: frozenset[str] = frozenset(),
    ) -> Iterator[Entry]:
        """Every entry not named in `exclude`, lazily, in order: arguments, then listed paths."""
        for argument in chain(self.arguments, self._listed(stdin)):
            for entry in _argument(argument, self.recursive, skipped):
                if entry.image not in exclude:
                    yield entry

    def count(self, exclude: frozenset[str] = frozenset()) -> int | None:
        """How many entries `entries` gives, by a second walk of the same inputs; None when
        they come from stdin, which can be read only once."""
        if self.files_from == "-":
            return None
        return sum(1 for _ in self.entries(exclude=exclude))

    def _listed(self, stdin: TextIO | None) -> Iterator[str]:
        if self.files_from == "-":
            yield from _lines(stdin or ())
        elif self.files_from is not None:
            with open(self.files_from, encoding="utf-8") as listing:
                yield from _lines(listing)


def _lines(listing: Iterable[str]) -> Iterator[str]:
    """The paths of a listing: one per line, line endings removed, blank lines ignored."""
    for line in listing:
        path = line.rstrip("\r\n")
        if path:
            yield path


def _argument(argument: str, recursive: bool, skipped: Skipped) -> Iterator[Entry]:
    """A file as given, a directory as its image files, a glob as its matching files."""
    if os.path.isdir(argument):
        found = yield from _directory(argument, recursive, set(), skipped)
        if not found:
            yield Entry(argument, "directory holds no image files")
    elif os.path.exists(argument) or os.path.islink(argument):
        yield Entry(argument)
    elif glob.has_magic(argument):
        matches = sorted(glob.glob(argument, recursive=recursive))
        files = [Entry(m) for m in matches if not os.path.isdir(m)]
        yield from files or [Entry(argument, "no file matches")]
    else:
        yield Entry(argument, "no such file (check the path)")


def _directory(
    path: str, recursive: bool, visited: set[tuple[int, int]], skipped: Skipped
) -> Iterator[Entry]:
    """The images of a directory in name order, descending into subdirectories when
    `recursive`; returns how many it yielded. A directory is entered once, by its device and
    inode, so a symlink loop ends instead of recursing forever."""
    try:
        identity = os.stat(path)
        if (identity.st_dev, identity.st_ino) in visited:
            skipped(path, "already visited (a symlink loop or a second link to it)")
            return 0
        visited.add((identity.st_dev, identity.st_ino))
        with os.scandir(path) as listing:
            children = sorted(listing, key=lambda child: child.name)
    except OSError as exc:
        yield Entry(path, f"cannot list the directory ({exc.strerror or exc})")
        return 1
    found = 0
    for child in children:
        if _is_dir(child):
            if recursive:
                found += yield from _directory(child.path, recursive, visited, skipped)
            else:
                skipped(child.path, "a directory (--recursive descends into it)")
        elif not is_image_name(child.name):
            skipped(child.path, "not an image file, by its extension")
        else:
            found += 1
            yield Entry(child.path)
    return found


def _is_dir(child: os.DirEntry[str]) -> bool:
    """Whether a listed entry is a directory (following links); a vanished one is not."""
    try:
        return child.is_dir()
    except OSError:
        return False
