"""Building a Keras model for a registry record, with the weights the user asked for.

Three weights sources: `imagenet` (Keras's own download and `KERAS_HOME` cache), `none` (random
initialisation, for trying the tool offline and for tests) and a path to a `.weights.h5` or legacy
`.h5` file. Every failure becomes one `CnnError` sentence that says what to do: which file, what
is wrong with it (a failed download, a corrupt copy in Keras's cache, another model's weights).
"""

from __future__ import annotations

import importlib
import math
import os
import re
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cnncli.errors import CnnError, UsageError, first_line
from cnncli.registry import Arch
from cnncli.tf_runtime import import_keras

#: The seed of random initialisation (`--weights none`, and the base of a file's weights): random
#: weights, but the same ones every run, so an example or a test shows the same labels twice.
RANDOM_SEED = 0


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
        present = _files_in(keras_cache_dir())
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return make(weights="imagenet", input_shape=shape, **arch.kwargs)
        except Exception as exc:
            if "URL fetch failure" in str(exc) or isinstance(exc, OSError):
                raise imagenet_error(arch, exc, present) from exc
            raise
    with warnings.catch_warnings(), _seeded(RANDOM_SEED):
        warnings.simplefilter("ignore")
        model = make(weights=None, input_shape=shape, **arch.kwargs)
    if weights.path is not None:
        load_weights_file(model, arch, weights.path)
    return model


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Keras's initialisers seeded for the block, and Python's and NumPy's global generators
    given back their state after it: a library call must not reseed its caller's randomness."""
    import random

    import numpy as np

    saved = random.getstate(), np.random.get_state()
    import_keras().utils.set_random_seed(seed)
    try:
        yield
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])


def keras_cache_dir() -> Path:
    """Where Keras keeps downloaded weights: `$KERAS_HOME/models`, else `~/.keras/models`."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


def _files_in(folder: Path) -> frozenset[str]:
    try:
        return frozenset(os.listdir(folder))
    except OSError:
        return frozenset()


def imagenet_error(arch: Arch, exc: BaseException, present: frozenset[str]) -> CnnError:
    """One sentence for ImageNet weights Keras could not provide: which file, from where, what to
    do. `present` (the files in Keras's cache before the attempt) tells a failed download apart
    from a corrupt copy already there: Keras loads a copy it has no checksum for and fails to
    read it, and replaces (removes, then downloads) one that fails its checksum."""
    folder, text = keras_cache_dir(), str(exc)
    match = re.search(r"URL fetch failure on (\S+): (?:None -- )?(.*)", text)
    if match is None:
        corrupt = [str(folder / name) for name in sorted(present) if _unreadable(folder / name)]
        if corrupt:
            return CnnError(
                f"the ImageNet weights file {', '.join(corrupt)} in Keras's cache is corrupt "
                f"({first_line(exc)}): delete it so that Keras downloads it again"
            )
    url = match.group(1) if match else "Keras's weights server"
    reason = (match.group(2) if match else text).strip() or type(exc).__name__
    filename = url.rsplit("/", 1)[-1] if match else "the weights file"
    if filename in present:
        return _checksum_error(folder / filename, url, reason)
    return CnnError(
        f"cannot download the ImageNet weights of {arch.name}: {filename} from {url} failed "
        f"({reason}); put that file in {folder}/ or pass --weights PATH to load a "
        "local weights file"
    )


def _checksum_error(path: Path, url: str, reason: str) -> CnnError:
    """A copy in Keras's cache failed its checksum and the download replacing it failed."""
    problem = "not the published file: its checksum differs"
    if path.exists():
        return CnnError(
            f"the ImageNet weights file {path} is corrupt ({problem}) and downloading it again "
            f"from {url} failed ({reason}): delete it and rerun with network, or pass "
            "--weights PATH"
        )
    return CnnError(
        f"the ImageNet weights file {path} was corrupt ({problem}), so Keras removed it, and "
        f"downloading it again from {url} failed ({reason}): put a good copy in {path.parent}/ "
        "or pass --weights PATH"
    )


def _unreadable(path: Path) -> bool:
    """Whether `path` is a Keras weights file (`.h5`) that HDF5 cannot open."""
    import h5py

    if path.suffix != ".h5":
        return False
    try:
        h5py.File(path, "r").close()
    except OSError:
        return True
    return False


def load_weights_file(model: Any, arch: Arch, path: Path) -> None:
    """Load `path` into `model` strictly: a file for another architecture is an error."""
    try:
        with warnings.catch_warnings():
            # Keras only warns when it skips parts of a file; a partial load is a wrong file.
            warnings.simplefilter("error", UserWarning)
            model.load_weights(str(path))
    except (ValueError, UserWarning, KeyError) as exc:
        expected, found = Contents.of_model(model), Contents.of_file(path, model)
        held = f"it holds {found}" if found not in (None, expected) else first_line(exc)
        raise CnnError(
            f"weights file {path} does not fit {arch.name}: {held}, where {arch.name} has "
            f"{expected}; give the weights of a {arch.name} classifier"
        ) from exc
    except OSError as exc:
        raise CnnError(
            f"weights file {path} is not a readable Keras weights file ({exc}); give a "
            ".weights.h5 or .h5 file"
        ) from exc


@dataclass(frozen=True)
class Contents:
    """What a weights file or a model holds, in the terms a person checks a file by: layers with
    weights, the number of values, and the classes of its classifier (when recognisable)."""

    layers: int
    values: int
    classes: int | None

    def __str__(self) -> str:
        classes = f" for {self.classes} classes" if self.classes else ""
        return f"{self.layers} layers with weights ({self.values:,} values){classes}"

    @classmethod
    def of_model(cls, model: Any) -> Contents:
        layers = [layer for layer in model.layers if layer.weights]
        return cls(len(layers), model.count_params(), int(model.outputs[0].shape[-1]))

    @classmethod
    def of_file(cls, path: Path, model: Any) -> Contents | None:
        """The contents of a Keras 3 `.weights.h5` (a `vars` group per layer) or legacy `.h5`
        (a group per layer) file, None when it cannot be read; its classes are the outputs of
        the layer shaped like `model`'s classifier but for that number."""
        import h5py

        layers: dict[str, list[tuple[int, ...]]] = {}

        def add(name: str, item: object) -> None:
            if isinstance(item, h5py.Dataset):
                parent = name.rpartition("/")[0]
                layer = parent if parent.endswith("vars") else name.partition("/")[0]
                layers.setdefault(layer, []).append(item.shape)

        try:
            with h5py.File(path, "r") as file:
                file.get("model_weights", file).visititems(add)
        except (OSError, KeyError):
            return None
        values = sum(math.prod(shape) for shapes in layers.values() for shape in shapes)
        kernel = tuple(
            next(layer for layer in reversed(model.layers) if layer.weights).weights[0].shape
        )
        return cls(len(layers), values, _classes(layers.values(), kernel))


def _classes(layers: Iterable[list[tuple[int, ...]]], kernel: tuple[int, ...]) -> int | None:
    """The output size of the layer shaped like a classifier with `kernel` but for its last
    axis, with a bias as long: a file's number of classes."""
    for shapes in layers:
        if len(shapes) != 2:
            continue
        weights, bias = sorted(shapes, key=len, reverse=True)
        if len(bias) == 1 and weights[:-1] == kernel[:-1] and len(weights) == len(kernel):
            return weights[-1] if bias[0] == weights[-1] else None
    return None
