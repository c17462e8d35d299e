"""Building a Keras model for a registry record, with the weights the user asked for.

Three weights sources: `imagenet` (Keras's own download and `KERAS_HOME` cache), `none` (random
initialisation, for trying the tool offline and for tests) and a path to a `.weights.h5` or legacy
`.h5` file. Every failure becomes one `CnnError` sentence that says what to do.
"""

from __future__ import annotations

import importlib
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cnncli.errors import CnnError, UsageError, first_line
from cnncli.registry import Arch
from cnncli.tf_runtime import import_keras


@dataclass(frozen=True)
class Weights:
    """Where a model's weights come from: `imagenet`, `none` or a file."""

    source: Literal["imagenet", "none", "file"]
    path: Path | None = None

    @classmethod
    def parse(cls, text: str) -> Weights:
        """`imagenet`, `none` (also `random`) or a path to an existing weights file."""
        lowered = text.strip().lower()
        if lowered == "imagenet":
            return cls("imagenet")
        if lowered in ("none", "random"):
            return cls("none")
        path = Path(text).expanduser()
        if path.suffix != ".h5":
            raise UsageError(
                f"weights file '{text}' is not a Keras weights file: give a .weights.h5 or .h5 "
                "file, `imagenet` or `none`"
            )
        if not path.is_file():
            raise UsageError(
                f"weights file '{text}' not found: give `imagenet`, `none` or the path of a "
                ".weights.h5 / .h5 file"
            )
        return cls("file", path)

    def __str__(self) -> str:
        return str(self.path) if self.path else self.source


def constructor(arch: Arch) -> Any:
    """The callable that builds `arch`: a keras.applications class or one of ours."""
    if ":" in arch.constructor:
        module, name = arch.constructor.split(":")
        return getattr(importlib.import_module(module), name)
    return getattr(import_keras().applications, arch.constructor)


def build(arch: Arch, weights: Weights) -> Any:
    """The ImageNet classifier for `arch` at its own input size, with `weights` loaded."""
    shape = (arch.input_size, arch.input_size, 3)
    make = constructor(arch)
    if weights.source == "imagenet":
        if not arch.pretrained:
            raise CnnError(
                f"{arch.name} has no published ImageNet weights in Keras: use --weights none "
                "(random) or --weights PATH (a trained .weights.h5 file)"
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return make(weights="imagenet", input_shape=shape, **arch.constructor_kwargs)
        except Exception as exc:
            if "URL fetch failure" in str(exc) or isinstance(exc, OSError):
                raise download_error(arch, exc) from exc
            raise
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = make(weights=None, input_shape=shape, **arch.constructor_kwargs)
    if weights.path is not None:
        load_weights_file(model, arch, weights.path)
    return model


def keras_cache_dir() -> Path:
    """Where Keras keeps downloaded weights: `$KERAS_HOME/models`, else `~/.keras/models`."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


def download_error(arch: Arch, exc: BaseException) -> CnnError:
    """One sentence for a failed weights download: which file, from where, where to put it."""
    text = str(exc)
    match = re.search(r"URL fetch failure on (\S+): (?:None -- )?(.*)", text)
    url = match.group(1) if match else "Keras's weights server"
    reason = (match.group(2) if match else text).strip() or type(exc).__name__
    filename = url.rsplit("/", 1)[-1] if match else "the weights file"
    return CnnError(
        f"cannot download the ImageNet weights of {arch.name}: {filename} from {url} failed "
        f"({reason}); put that file in {keras_cache_dir()}/ or pass --weights PATH to load a "
        "local weights file"
    )


def load_weights_file(model: Any, arch: Arch, path: Path) -> None:
    """Load `path` into `model` strictly: a file for another architecture is an error."""
    try:
        with warnings.catch_warnings():
            # Keras only warns when it skips parts of a file; a partial load is a wrong file.
            warnings.simplefilter("error", UserWarning)
            model.load_weights(str(path))
    except (ValueError, UserWarning, KeyError) as exc:
        raise CnnError(
            f"weights file {path} does not fit {arch.name} ({first_line(exc)}); give the weights "
            f"of a {arch.name} classifier with 1000 classes"
        ) from exc
    except OSError as exc:
        raise CnnError(
            f"weights file {path} is not a readable Keras weights file ({exc}); give a "
            ".weights.h5 or .h5 file"
        ) from exc
