"""Engines: what runs a registry record's forward pass, and how `--engine auto` chooses.

A `Classifier` pairs a registry record with a forward pass (a batch of preprocessed pixels in,
softmax scores out), so preprocessing and decoding derive from the record and are never restated
by callers. `keras` is the reference: always there, needed for summaries and Grad-CAM. `litert`
runs a LiteRT conversion of the same model from the compiled-model cache, without importing
TensorFlow once the entry exists. `auto` takes `litert` when its runtime is installed and the
model converts, and says when it falls back.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnncli import litert, loader
from cnncli.cache import CacheUnwritable, ModelCache
from cnncli.choices import Engine
from cnncli.env import Environment
from cnncli.errors import CnnError, first_line
from cnncli.preprocess import preprocess
from cnncli.progress import status
from cnncli.registry import Arch

Forward = Callable[[np.ndarray], np.ndarray]


@dataclass
class Classifier:
    """A registry record with its weights, and its forward pass (preprocessed batch -> softmax
    scores).

    Which engine runs the pass (`engines.open_classifier` chooses) is recorded for the output.
    """

    arch: Arch
    weights: loader.Weights
    forward: Forward
    engine: str

    def scores(self, pixels: np.ndarray) -> np.ndarray:
        """Softmax scores (n, 1000) for RGB pixels (n, size, size, 3) in 0-255."""
        return self.forward(preprocess(pixels, self.arch.preprocessing))


def keras_forward(model: Any) -> Forward:
    """A compiled forward pass: `predict_on_batch` traces once (eager calls are ~4x slower
    here), and unlike `predict` it prints no progress bar and adds no per-call dataset setup."""

    def forward(batch: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict_on_batch(batch))

    return forward


class ConversionError(CnnError):
    """The Keras model could not be converted for the compiled engine."""


def open_classifier(
    arch: Arch, weights: loader.Weights, choice: Engine, env: Environment
) -> Classifier:
    """A classifier for `arch` with `weights` on the engine `choice` resolves to."""
    if choice is Engine.keras or (choice is Engine.auto and not litert.available()):
        return _keras(arch, weights, env)
    if not litert.available():
        raise CnnError("--engine litert needs the LiteRT runtime: pip install ai-edge-litert")
    if choice is Engine.auto and weights.source == "none":
        return _keras(arch, weights, env)  # random weights: converting costs more than it saves
    try:
        return _litert(arch, weights, choice, env)
    except ConversionError as exc:
        if choice is Engine.litert:
            raise
        env.warn(f"{exc}; running it on Keras instead")
        return _keras(arch, weights, env)


def flatbuffer(classifier: Classifier) -> bytes:
    """The LiteRT model a classifier runs, for workers that load it without TensorFlow."""
    if not isinstance(classifier.forward, litert.Runner):
        raise CnnError(f"{classifier.arch.name} runs on {classifier.engine}, not on LiteRT")
    return classifier.forward.flatbuffer


def warn_if_random(env: Environment, models: Iterable[tuple[Arch, loader.Weights]]) -> None:
    """`--weights none` gives labels as confident-looking as trained ones: say once that they
    mean nothing."""
    names = [arch.name for arch, weights in models if weights.source == "none"]
    if names:
        env.warn(f"{', '.join(names)}: random weights (--weights none), the labels are meaningless")


def keras_model(arch: Arch, weights: loader.Weights, env: Environment) -> Any:
    """The Keras model, with a spinner while it builds and loads its weights."""
    with status(env, f"loading {arch.name} ({weights} weights)"):
        return loader.build(arch, weights)


def _keras(arch: Arch, weights: loader.Weights, env: Environment) -> Classifier:
    return Classifier(arch, weights, keras_forward(keras_model(arch, weights, env)), "keras")


def _litert(arch: Arch, weights: loader.Weights, choice: Engine, env: Environment) -> Classifier:
    """From the cache when the entry exists, is intact and loads; converted (and stored)
    otherwise. A cache that cannot be written is not a reason to fail: `auto` runs the model on
    Keras, `litert` converts it for this run alone."""
    if weights.source == "none":  # random weights are never cached
        return _uncached(arch, weights, keras_model(arch, weights, env), env)
    cache = ModelCache(env.cache_dir)
    key = cache.key(arch, weights, litert.NAME)
    path = cache.lookup(key, litert.SUFFIX)
    if path is not None:
        try:
            cache.verify(path)
            return Classifier(arch, weights, load_runner(path, arch), litert.NAME)
        except (ValueError, RuntimeError) as exc:  # a `ChangedEntry`, or a file LiteRT refuses
            env.warn(f"cache entry {path.name} is unusable ({exc}); rebuilding it")
            cache.discard(path)
    model = keras_model(arch, weights, env)
    try:
        path = cache.store(
            key, litert.SUFFIX, lambda tmp: _convert(arch, model, tmp, env, cached=True)
        )
    except CacheUnwritable as exc:
        if choice is Engine.auto:
            env.warn(f"{exc}; running {arch.name} on Keras")
            return Classifier(arch, weights, keras_forward(model), "keras")
        env.warn(f"{exc}; converting {arch.name} for this run only")
        return _uncached(arch, weights, model, env)
    return Classifier(arch, weights, load_runner(path, arch), litert.NAME)


def _uncached(arch: Arch, weights: loader.Weights, model: object, env: Environment) -> Classifier:
    """Convert into a temporary folder; the runner keeps the flatbuffer after it goes."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"model{litert.SUFFIX}"
        _convert(arch, model, path, env, cached=False)
        return Classifier(arch, weights, litert.Runner(path), litert.NAME)


def _convert(arch: Arch, model: object, path: Path, env: Environment, cached: bool) -> None:
    """Convert, saying so even off a terminal: it is the one step that takes tens of seconds."""
    when = "once, then cached" if cached else "for this run only"
    with status(env, f"converting {arch.name} for LiteRT ({when})", announce=True):
        try:
            litert.convert(model, path)
        except Exception as exc:
            reason = f"{arch.name} does not convert to LiteRT ({first_line(exc)})"
            raise ConversionError(reason) from exc


def load_runner(model: Path | bytes, arch: Arch, threads: int | None = None) -> litert.Runner:
    """Load a flatbuffer (a cache entry, or the bytes a cluster's worker was sent), refusing
    one whose input does not match the record."""
    runner = litert.Runner(model, threads)
    if runner.input_size != arch.input_size:
        raise ValueError(f"input {runner.input_size} px, expected {arch.input_size}")
    return runner
