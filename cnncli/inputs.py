"""Turning IMAGE arguments (files, directories, globs) into the list of images to classify.

Expansion never fails as a whole: an argument that names nothing becomes an entry carrying its
error, so it is reported beside the results of the others.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from PIL import Image


@dataclass(frozen=True)
class Entry:
    """One image to classify, as the user will see its name, or the reason it cannot be."""

    image: str
    error: str | None = None


@cache
def image_extensions() -> frozenset[str]:
    """File endings Pillow can open (`.jpg`, `.png`, `.webp`, ...), lower case."""
    return frozenset(ext.lower() for ext in Image.registered_extensions())


def is_image_name(path: str | Path) -> bool:
    """Whether a file's name says it is an image Pillow reads."""
    return Path(path).suffix.lower() in image_extensions()


def _directory(path: str) -> list[Entry]:
    names = sorted(n for n in os.listdir(path) if is_image_name(n))
    files = [os.path.join(path, n) for n in names if os.path.isfile(os.path.join(path, n))]
    return [Entry(f) for f in files] or [Entry(path, "directory holds no image files")]


def expand(arguments: Iterable[str]) -> list[Entry]:
    """Files as given, directories as their image files (sorted), globs as their matches."""
    entries: list[Entry] = []
    for arg in arguments:
        if os.path.isdir(arg):
            entries.extend(_directory(arg))
        elif os.path.exists(arg) or os.path.islink(arg):
            entries.append(Entry(arg))
        elif glob.has_magic(arg):
            matches = sorted(glob.glob(arg))
            files = [m for m in matches if os.path.isfile(m)]
            entries.extend([Entry(m) for m in files] or [Entry(arg, "no file matches")])
        else:
            entries.append(Entry(arg, "no such file (check the path)"))
    return entries
