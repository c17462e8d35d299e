"""The folder `cnn train --output DIR` writes, and when it may be written.

    DIR/model.keras, DIR/cnn-model.json   the bundle (`bundle.write`), written last
    DIR/history.csv                       one row per epoch: phase, epoch, train and val figures
    DIR/curves.png, DIR/confusion.png     loss and accuracy per epoch; the val confusion matrix
    DIR/split.json                        which file went to train, val and test
    DIR/resume.json, DIR/resume.npz       only after an interrupt: what `--resume` goes on from

A folder is written only when it is new, empty, or holds a bundle of this same run (the same
DATA and architecture): anything else may be someone's work, and is refused unless `--force`,
which writes these names alone and leaves every other file as it is. DIR inside DATA is refused
outright: its pictures would be taken for training images next time.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cnncli import bundle, files, plots
from cnncli.errors import UsageError
from cnncli.inputs import printable
from cnncli.training import Checkpoint, Epoch, Progress, Snapshot

HISTORY, CURVES, CONFUSION, SPLIT = "history.csv", "curves.png", "confusion.png", "split.json"
STATE, ARRAYS = "resume.json", "resume.npz"


def check(folder: Path, data: Path, arch: str, force: bool, resume: bool) -> None:
    """Refuse a `--output` folder this run must not write (see the module's rule)."""
    shown = printable(str(folder))
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--output {shown}: is a file; give a folder for the trained model")
    if _within(folder, data):
        raise UsageError(
            f"--output {shown} is inside DATA: its pictures would be read as training images "
            "next time; choose a folder outside DATA"
        )
    if resume:
        if not (folder / STATE).is_file():
            raise UsageError(
                f"--output {shown}: holds no interrupted run to resume (no {STATE}); run "
                "without --resume to train from the start"
            )
        _require_this_run(folder, data, arch, "--resume needs the folder of the interrupted run")
    elif not force and folder.is_dir() and any(folder.iterdir()):
        _require_this_run(folder, data, arch, "add --force to write into it anyway")


def check_parent(folder: Path, data: Path, force: bool) -> None:
    """The folder holding several architectures' bundles (`DIR/<arch>`): new, empty, or
    holding only bundles trained on DATA, unless `--force`."""
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--output {printable(str(folder))}: is a file; give a folder")
    if force or not folder.is_dir():
        return
    for entry in folder.iterdir():
        if not (entry.is_dir() and _trained_on(entry) == data.resolve()):
            raise UsageError(
                f"--output {printable(str(folder))}: exists and holds "
                f"{printable(entry.name)}, which is not a model trained on this DATA; choose a "
                "new folder, or add --force to write the models' folders into it anyway"
            )


def _within(folder: Path, data: Path) -> bool:
    folder, data = folder.resolve(), data.resolve()
    return folder == data or data in folder.parents


def _trained_on(folder: Path) -> Path | None:
    """The DATA a bundle in `folder` was trained on, by its metadata; None if not a bundle."""
    try:
        metadata = json.loads((folder / bundle.METADATA).read_text(encoding="utf-8"))
        return Path(metadata["data"]["root"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _require_this_run(folder: Path, data: Path, arch: str, fix: str) -> None:
    shown = printable(str(folder))
    try:
        metadata = json.loads((folder / bundle.METADATA).read_text(encoding="utf-8"))
        trained = (Path(metadata["data"]["root"]), metadata["arch"])
    except (OSError, ValueError, KeyError, TypeError):
        raise UsageError(
            f"--output {shown}: exists and is not a model `cnn train` wrote; choose a new "
            f"folder, or {fix}"
        ) from None
    if trained != (data.resolve(), arch):
        raise UsageError(
            f"--output {shown}: holds {trained[1]} trained on {printable(str(trained[0]))}, "
            f"not {arch} on {printable(str(data.resolve()))}; choose a new folder, or {fix}"
        )


# --- What training leaves beside the model ----------------------------------------------------


def write_history(folder: Path, history: Sequence[Epoch]) -> None:
    """history.csv: one row per epoch, as Keras's CSVLogger writes it (plus phase and time)."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    rows = [record.as_dict() for record in history]
    writer.writerow(list(Epoch.__dataclass_fields__))
    writer.writerows(row.values() for row in rows)
    _write_text(folder / HISTORY, text.getvalue())


def write_split(folder: Path, assignment: Mapping[str, list[str]], root: Path) -> None:
    """split.json: which file (relative to DATA) went to train, val and test."""
    document = {"data": str(root.resolve()), **assignment}
    _write_text(folder / SPLIT, json.dumps(document, indent=1, ensure_ascii=False) + "\n")


def write_pictures(
    folder: Path,
    progress: Progress,
    matrix: np.ndarray | None,
    classes: Sequence[str],
    title: str,
) -> None:
    """curves.png, and confusion.png when there is a val confusion matrix to draw."""
    plots.curves(progress.history, progress.best, folder / CURVES)
    if matrix is not None:
        plots.confusion(matrix, classes, title, folder / CONFUSION)


def _write_text(path: Path, text: str) -> None:
    files.atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def finite(value: float | None) -> float | None:
    """A metric as JSON can hold it: NaN and infinity (a diverged run's loss) become null."""
    return value if value is not None and math.isfinite(value) else None


# --- The state an interrupted run leaves for --resume -----------------------------------------


def write_state(folder: Path, checkpoint: Checkpoint) -> None:
    """resume.json (where the run was) and resume.npz (its weights at the last finished epoch
    and at the best one, and the optimizer's state), the arrays first: the JSON says they are
    whole."""
    arrays = {
        **{f"last/{i}": v for i, v in checkpoint.last.values.items()},
        **{f"best/{i}": v for i, v in checkpoint.best.values.items()},
        **{f"optimizer/{i}": v for i, v in enumerate(checkpoint.last.optimizer)},
    }
    files.atomic_write(folder / ARRAYS, lambda tmp: _save_arrays(tmp, arrays), suffix=".npz")
    progress = checkpoint.progress
    document = {
        "phase": progress.phase,
        "epochs": progress.epochs,
        "history": [json_epoch(e) for e in progress.history],
        "best_loss": finite(progress.best_loss),
        "best": list(progress.best) if progress.best else None,
        "wait": progress.wait,
        "failed": progress.failed,
    }
    _write_text(folder / STATE, json.dumps(document, indent=1, ensure_ascii=False) + "\n")


def _save_arrays(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    with path.open("wb") as file:
        np.savez(file, **arrays)


def json_epoch(epoch: Epoch) -> dict[str, Any]:
    """An epoch as strict JSON holds it (a diverged loss is null)."""
    return {k: finite(v) if isinstance(v, float) else v for k, v in epoch.as_dict().items()}


def read_state(folder: Path) -> Checkpoint:
    """The checkpoint `write_state` left; `UsageError` when it is unreadable."""
    try:
        document = json.loads((folder / STATE).read_text(encoding="utf-8"))
        with np.load(folder / ARRAYS) as arrays:
            parts: dict[str, dict[int, np.ndarray]] = {"last": {}, "best": {}, "optimizer": {}}
            for name in arrays.files:
                part, index = name.split("/")
                parts[part][int(index)] = arrays[name]
        history = [Epoch(**{k: _nan(v) for k, v in e.items()}) for e in document["history"]]
        best = document["best"]
        progress = Progress(
            document["phase"],
            document["epochs"],
            history,
            math.inf if document["best_loss"] is None else document["best_loss"],
            (best[0], best[1]) if best else None,
            document["wait"],
            document["failed"],
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(
            f"--output {printable(str(folder))}: the interrupted run's state ({STATE}, {ARRAYS}) "
            f"is unreadable ({exc}); run without --resume to train from the start"
        ) from exc
    optimizer = [parts["optimizer"][i] for i in sorted(parts["optimizer"])]
    return Checkpoint(progress, Snapshot(parts["last"], optimizer), Snapshot(parts["best"]))


def _nan(value: Any) -> Any:
    """A metric read back: null (written for NaN) is NaN again."""
    return math.nan if value is None else value


def clear_state(folder: Path) -> None:
    """Remove the resume state once the run it belongs to has finished."""
    for name in (STATE, ARRAYS):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(folder / name)
