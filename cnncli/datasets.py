"""A training data set as the field lays it out: one folder of images per class.

`DATA/<class>/...` (as Keras's `image_dataset_from_directory`, torchvision's `ImageFolder` and
Ultralytics read it), or `DATA/train/<class>/`, `DATA/val/<class>/` and optionally
`DATA/test/<class>/`. A class's name is its folder's, kept exactly (spaces, any script); the
class index is the folders' sorted order, as in Keras and torchvision. Without a val folder a
share of each class is held out, seeded, and which file went where is recorded.

Nothing is dropped silently: what discovery passes over (loose images, a class too small to
split, a val class missing) is a warning, and what cannot be trained on is one `UsageError`
naming the folder and the fix.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cnncli.errors import UsageError
from cnncli.inputs import is_image_name, printable

#: The folders of a pre-split data set, as Ultralytics and most published sets name them.
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Sample:
    """One image file and the index of its class."""

    path: str
    label: int


@dataclass(frozen=True)
class Dataset:
    """A data set's classes (index order) and its images per split, with the warnings
    discovery raised."""

    root: Path
    classes: tuple[str, ...]
    train: tuple[Sample, ...]
    val: tuple[Sample, ...]
    test: tuple[Sample, ...] = ()
    warnings: tuple[str, ...] = ()

    def assignment(self) -> dict[str, list[str]]:
        """Which file went to which split, as paths relative to the root: the bundle keeps it
        (`split.json`), so a result can be traced to the exact images it was measured on."""
        return {
            part: [os.path.relpath(s.path, self.root) for s in getattr(self, part)]
            for part in SPLITS
        }

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per class in each split."""
        counts = {part: dict.fromkeys(self.classes, 0) for part in SPLITS}
        for part in SPLITS:
            for sample in getattr(self, part):
                counts[part][self.classes[sample.label]] += 1
        return counts


def discover(data: str | os.PathLike, val_split: float = 0.2, seed: int = 0) -> Dataset:
    """The data set in `data`, in either layout. Without a `val/` folder, `val_split` of each
    class is held out (stratified, seeded). `UsageError` for what cannot be trained on."""
    root = Path(data)
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise UsageError(
            f"{printable(str(root))}: {what}; give a folder holding a subfolder of images per class"
        )
    if not 0 < val_split < 1:
        raise UsageError(f"--val-split {val_split} is outside 0-1; give a fraction such as 0.2")
    notes: list[str] = []
    if (root / "train").is_dir():
        return _presplit(root, val_split, seed, notes)
    classes = _class_folders(root, notes)
    _require_two(root, classes)
    files = {name: _images(root / name) for name in classes}
    train, val = _hold_out(root, classes, files, val_split, seed, notes)
    return Dataset(root, tuple(classes), train, val, (), tuple(notes))


def _presplit(root: Path, val_split: float, seed: int, notes: list[str]) -> Dataset:
    """DATA/train, DATA/val, DATA/test: the classes are train's; val and test may lack some."""
    folders = _class_folders(root, notes)
    if extra := [name for name in folders if name not in SPLITS]:
        notes.append(
            f"{printable(str(root))}: skipped folder(s) {', '.join(map(printable, extra))}: "
            f"beside train/, only {', '.join(SPLITS[1:])} are read"
        )
    classes = _class_folders(root / "train", notes)
    _require_two(root / "train", classes)
    files = {name: _images(root / "train" / name) for name in classes}
    if "val" in folders:
        train = _samples(classes, files)
        val = _part(root / "val", classes, notes)
    else:
        train, val = _hold_out(root / "train", classes, files, val_split, seed, notes)
    test = _part(root / "test", classes, notes) if "test" in folders else ()
    return Dataset(root, tuple(classes), train, val, test, tuple(notes))


def _part(folder: Path, classes: Sequence[str], notes: list[str]) -> tuple[Sample, ...]:
    """The images of val/ or test/: only classes the training set has can be measured."""
    names = _class_folders(folder, notes)
    if unknown := [name for name in names if name not in classes]:
        raise UsageError(
            f"{printable(str(folder / unknown[0]))}: class '{printable(unknown[0])}' has no "
            f"folder in train/, so no model can learn it; add train/{printable(unknown[0])}/ "
            "or remove the folder"
        )
    if missing := [name for name in classes if name not in names]:
        notes.append(
            f"{printable(str(folder))}: no folder for class(es) "
            f"{', '.join(map(printable, missing))}: they are not measured there"
        )
    return _samples(classes, {name: _images(folder / name) for name in names})


def _samples(classes: Sequence[str], files: dict[str, list[str]]) -> tuple[Sample, ...]:
    return tuple(
        Sample(path, label) for label, name in enumerate(classes) for path in files.get(name, [])
    )


def _class_folders(folder: Path, notes: list[str]) -> list[str]:
    """The visible subfolders of `folder`, sorted; images lying beside them are skipped with a
    warning (they belong to no class)."""
    try:
        with os.scandir(folder) as listing:
            entries = sorted(listing, key=lambda entry: entry.name)
    except OSError as exc:
        raise UsageError(f"{printable(str(folder))}: cannot read folder ({exc.strerror})") from exc
    if loose := [e.name for e in entries if e.is_file() and is_image_name(e.name)]:
        notes.append(
            f"{printable(str(folder))}: skipped {len(loose)} image(s) outside any class folder "
            f"(first: {printable(loose[0])}); put each in its class's folder, "
            f"{printable(str(folder))}/<class>/"
        )
    names = [e.name for e in entries if e.is_dir() and not e.name.startswith(".")]
    for name in names:
        _require_utf8(folder / name)
    return names


def _require_utf8(folder: Path) -> None:
    """Class names are kept exactly (spaces, any script), but must be text: a name that is not
    UTF-8 cannot be a label in JSON output or in the bundle's metadata."""
    try:
        folder.name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UsageError(
            f"{printable(str(folder))}: the folder's name is not valid UTF-8, so it cannot be "
            "a class name; rename the folder"
        ) from exc


def _require_two(folder: Path, classes: Sequence[str]) -> None:
    if len(classes) < 2:
        found = f" ({', '.join(map(printable, classes))})" if classes else ""
        raise UsageError(
            f"{printable(str(folder))}: {len(classes)} class folder(s) found{found}; a "
            f"classifier needs at least two: put each class's images in "
            f"{printable(str(folder))}/<class>/"
        )


def _images(folder: Path) -> list[str]:
    """The image files under a class folder, at any depth (as Keras and torchvision read one),
    hidden files and folders left out; `UsageError` naming the folder when there are none or
    when part of it cannot be read (a class silently missing images would skew the model)."""

    def unreadable(exc: OSError) -> None:
        raise UsageError(
            f"{printable(str(exc.filename))}: cannot read folder ({exc.strerror}); make it "
            "readable or move it out of the data set"
        )

    found: list[str] = []
    for top, dirs, names in os.walk(folder, onerror=unreadable):
        dirs[:] = sorted(name for name in dirs if not name.startswith("."))
        found += [
            os.path.join(top, name)
            for name in names
            if is_image_name(name) and not name.startswith(".")
        ]
    if not found:
        raise UsageError(
            f"{printable(str(folder))}: class '{printable(folder.name)}' has no images (.jpg, "
            ".png, ...); add some or remove the folder"
        )
    return sorted(found)


def _hold_out(
    root: Path,
    classes: Sequence[str],
    files: dict[str, list[str]],
    val_split: float,
    seed: int,
    notes: list[str],
) -> tuple[tuple[Sample, ...], tuple[Sample, ...]]:
    """`val_split` of each class for validation, the rest for training. Each class is shuffled
    by its own generator seeded with (seed, class name), so adding or removing a class, or an
    image of another class, leaves a class's split as it was. A class too small to give one
    image and keep one stays whole in train, with a warning."""
    train: list[Sample] = []
    val: list[Sample] = []
    for label, name in enumerate(classes):
        paths = list(files[name])
        random.Random(f"{seed}/{name}").shuffle(paths)
        held = min(math.floor(len(paths) * val_split + 0.5), len(paths) - 1)
        if held < 1:
            notes.append(
                f"{printable(str(root / name))}: {len(paths)} image(s) are too few to hold out "
                f"{val_split:.0%} for validation; all are kept for training (add images)"
            )
        val += [Sample(path, label) for path in sorted(paths[:held])]
        train += [Sample(path, label) for path in sorted(paths[held:])]
    return tuple(train), tuple(val)
