"""A trained model as a folder (`cnn train --output DIR`), usable wherever a registry model is.

    DIR/model.keras       the whole classifier, pixels (preprocessed as the base network wants
                          them) in, softmax over the user's classes out; Keras's native format
    DIR/cnn-model.json    what it is: format and version, the base architecture, input size,
                          preprocessing and resize policy, the classes in index order, the base
                          weights' source, training options, metrics, data counts, versions
    DIR/...               whatever else training writes beside them (history.csv, curves.png,
                          confusion.png, split.json): for people, never read back here

A bundle is recognised by its metadata's `format`, refused when its `version` is newer than this
cnn reads, and its model is loaded with Keras's `safe_mode`, so a bundle whose model holds code
(a Lambda layer) is refused with a line saying so, never run. `Bundle.record` describes the
bundled network as a registry record does (input size, preprocessing, Grad-CAM layer), so every
command derives from it as from `registry.get(name)`; `Bundle.digest` keys caches on content.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from cnncli import files, registry
from cnncli.choices import Resize
from cnncli.errors import CnnError, UsageError, first_line

FORMAT = "cnncli.bundle"
#: The newest bundle format this cnn reads and the one it writes.
VERSION = 1
MODEL = "model.keras"
METADATA = "cnn-model.json"


@dataclass(frozen=True)
class Bundle:
    """A trained model's folder, read and checked (not yet its Keras model: see `model`)."""

    path: Path
    metadata: Mapping[str, Any]

    @property
    def name(self) -> str:
        """How outputs name the model: its folder's name."""
        return self.path.resolve().name

    @property
    def base(self) -> registry.Arch:
        """The registry record of the network the bundle was trained from."""
        return registry.get(self.metadata["arch"])

    @property
    def classes(self) -> tuple[str, ...]:
        """The class names, in the order of the model's outputs."""
        return tuple(self.metadata["classes"])

    @property
    def resize(self) -> Resize:
        """The resize policy training used, which classifying replays."""
        return Resize(self.metadata["resize"])

    @cached_property
    def record(self) -> registry.Arch:
        """The bundled network as a registry record: the base's input size, preprocessing and
        Grad-CAM layer, under the bundle's name, with no published weights or reference
        accuracy (those were the base's)."""
        return dataclasses.replace(
            self.base,
            name=self.name,
            input_size=int(self.metadata["input_size"]),
            preprocessing=self.metadata["preprocessing"],
            params=int(self.metadata.get("params", self.base.params)),
            top1=None,
            top5=None,
            weights=None,
            aliases=(),
        )

    @cached_property
    def digest(self) -> str:
        """SHA-256 of the model file and the metadata: what a cache entry of it is keyed on."""
        return self.digest_with(_file_sha256)

    def digest_with(self, file_hash: Callable[[Path], str]) -> str:
        """`digest`, from each file's SHA-256 as `file_hash` gives it (the compiled-model
        cache remembers them, so a warm run does not read the model whole)."""
        hashes = " ".join(file_hash(self.path / name) for name in (MODEL, METADATA))
        return hashlib.sha256(hashes.encode()).hexdigest()

    def model(self) -> Any:
        """The Keras model, loaded with `safe_mode` (no code from the file ever runs)."""
        from cnncli.tf_runtime import import_keras

        keras = import_keras()
        try:
            return keras.models.load_model(self.path / MODEL, compile=False, safe_mode=True)
        except ValueError as exc:
            if "safe_mode" in str(exc) or "lambda" in str(exc).lower():
                raise UsageError(
                    f"{self.path}: its model holds code (a Lambda layer), which cnn never runs "
                    "from a file; retrain it with `cnn train`"
                ) from exc
            raise CnnError(f"{self.path}: {MODEL} does not load ({first_line(exc)})") from exc
        except OSError as exc:
            raise CnnError(f"{self.path}: {MODEL} cannot be read ({exc})") from exc


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_bundle(path: str | os.PathLike) -> bool:
    """Whether `path` is a folder with a bundle's metadata file (checked or not)."""
    return (Path(path) / METADATA).is_file()


def load(path: str | os.PathLike, option: str = "--model") -> Bundle:
    """The bundle at `path`, checked: `UsageError` naming what is wrong and the fix otherwise
    (messages start with the `option` that named it: `--model`, or `--arch` in `cnn train`)."""
    folder = Path(path)
    if not folder.is_dir():
        raise UsageError(f"{option} {folder}: not a folder; give the folder `cnn train` wrote")
    try:
        metadata = json.loads((folder / METADATA).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(
            f"{option} {folder}: not a trained model (no {METADATA}); give the folder `cnn train` "
            "wrote"
        ) from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{option} {folder}: {METADATA} is unreadable ({exc})") from exc
    _check(f"{option} {folder}", folder, metadata)
    return Bundle(folder, metadata)


def _check(named: str, folder: Path, metadata: Any) -> None:
    """Refuse metadata that is not a bundle's, of a newer format, or incomplete (`named`: the
    option and folder, as messages start)."""
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise UsageError(f"{named}: {METADATA} is not a cnn model's metadata")
    version = metadata.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise UsageError(
            f"{named}: format version {version} is newer than this cnn reads "
            f"({VERSION}); upgrade cnncli"
        )
    required = ("arch", "input_size", "preprocessing", "resize", "classes")
    missing = [key for key in required if key not in metadata]
    if missing or not (folder / MODEL).is_file():
        what = ", ".join(missing) or MODEL
        raise UsageError(f"{named}: incomplete bundle (no {what}); train it again")
    registry.get(metadata["arch"])  # a base this cnn does not know is a usage error


def write(folder: Path, model: Any, metadata: Mapping[str, Any]) -> None:
    """Write the model and its metadata into `folder` (created if needed), each to a temporary
    name renamed into place, the metadata last: a folder that `load` accepts is always whole."""
    folder.mkdir(parents=True, exist_ok=True)
    document = {"format": FORMAT, "version": VERSION, **metadata}
    files.atomic_write(folder / MODEL, lambda tmp: model.save(tmp), suffix=".keras")
    text = json.dumps(document, indent=1, ensure_ascii=False, allow_nan=False) + "\n"
    files.atomic_write(folder / METADATA, lambda tmp: tmp.write_text(text, encoding="utf-8"))
