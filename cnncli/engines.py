"""Engines: what runs a network's forward pass, and how `--engine auto` chooses.

A `Classifier` pairs a network (a registry architecture with weights, or a trained model: see
`networks`) with a forward pass (a batch of preprocessed pixels in, softmax scores out), so
preprocessing, decoding and labels derive from the network and are never restated by callers.
`keras` is the reference: always there, needed for summaries and Grad-CAM. `litert` runs a
LiteRT conversion of the same model from the compiled-model cache, without importing TensorFlow
once the entry exists. `auto` takes `litert` when its runtime is installed and the model
converts, and says when it falls back.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnncli import litert
from cnncli.cache import CacheUnwritable, ModelCache
from cnncli.choices import Engine
from cnncli.env import Environment
from cnncli.errors import CnnError, first_line
from cnncli.labels import Labels
from cnncli.networks import Network, tag
from cnncli.preprocess import preprocess
from cnncli.progress import status
from cnncli.registry import Arch

Forward = Callable[[np.ndarray], np.ndarray]


@dataclass
class Classifier:
    """A network and its forward pass (preprocessed batch -> softmax scores).

    Which engine runs the pass (`engines.open_classifier` chooses) is recorded for the output,
    and `tag` (`networks.tag`) names the model in every result.
    """

    network: Network
    forward: Forward
    engine: str
    tag: str

    @property
    def arch(self) -> Arch:
        return self.network.record

    @property
    def labels(self) -> Labels:
        return self.network.labels

    def scores(self, pixels: np.ndarray) -> np.ndarray:
        """Softmax scores (n, classes) for RGB pixels (n, size, size, 3) in 0-255."""
        return self.forward(preprocess(pixels, self.arch.preprocessing))


def keras_forward(model: Any) -> Forward:
    """A compiled forward pass: `predict_on_batch` traces once (eager calls are ~4x slower
    here), and unlike `predict` it prints no progress bar and adds no per-call dataset setup."""

    def forward(batch: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict_on_batch(batch))

    return forward


class ConversionError(CnnError):
    """The Keras model could not be converted for the compiled engine."""


def open_classifier(network: Network, choice: Engine, env: Environment) -> Classifier:
    """A classifier for `network` on the engine `choice` resolves to."""
    return Opening(network, env).open(choice)


def keras_model(network: Network, env: Environment) -> Any:
    """The Keras model, with a spinner while it builds and loads its weights."""
    with status(env, f"loading {network.record.name} ({network.weights} weights)"):
        return network.keras_model()


class Opening:
    """A network being opened: its cache, its content's identity and tag (known before any
    model loads, so a run can check its output against them first), its Keras model once
    built."""

    def __init__(self, network: Network, env: Environment) -> None:
        self.network = network
        self.env = env
        self.cache = ModelCache(env.cache_dir)
        self.identity = network.identity(self.cache)
        self.tag = tag(network, self.identity)
        self.model: Any = None

    def open(self, choice: Engine) -> Classifier:
        """The classifier on the engine `choice` resolves to."""
        if choice is Engine.keras or (choice is Engine.auto and not litert.available()):
            return self.keras()
        if not litert.available():
            raise CnnError("--engine litert needs the LiteRT runtime: pip install ai-edge-litert")
        if choice is Engine.auto and self.network.random:
            return self.keras()  # random weights: converting costs more than it saves
        try:
            return self.litert(choice)
        except ConversionError as exc:
            if choice is Engine.litert:
                raise
            self.env.warn(f"{exc}; running it on Keras instead")
            return self.keras()

    def classifier(self, forward: Forward, engine: str) -> Classifier:
        return Classifier(self.network, forward, engine, self.tag)

    def built(self) -> Any:
        if self.model is None:
            self.model = keras_model(self.network, self.env)
        return self.model

    def keras(self) -> Classifier:
        return self.classifier(keras_forward(self.built()), "keras")

    def litert(self, choice: Engine) -> Classifier:
        """From the cache when the entry exists, is intact and loads; converted (and stored)
        otherwise. A cache that cannot be written is not a reason to fail: `auto` runs the model
        on Keras, `litert` converts it for this run alone."""
        network, cache, env = self.network, self.cache, self.env
        if network.random:  # random weights are never cached
            return self.uncached()
        key = cache.key(network.record, self.identity, litert.NAME)
        path = cache.lookup(key, litert.SUFFIX)
        if path is not None:
            try:
                cache.verify(path)
                return self.classifier(_runner(path, network.record), litert.NAME)
            except (ValueError, RuntimeError) as exc:  # a `ChangedEntry`, or a file LiteRT refuses
                env.warn(f"cache entry {path.name} is unusable ({exc}); rebuilding it")
                cache.discard(path)
        model = self.built()
        try:
            path = cache.store(key, litert.SUFFIX, lambda tmp: self.convert(tmp, cached=True))
        except CacheUnwritable as exc:
            name = network.record.name
            if choice is Engine.auto:
                env.warn(f"{exc}; running {name} on Keras")
                return self.classifier(keras_forward(model), "keras")
            env.warn(f"{exc}; converting {name} for this run only")
            return self.uncached()
        return self.classifier(_runner(path, network.record), litert.NAME)

    def uncached(self) -> Classifier:
        """Convert into a temporary folder; the runner keeps the flatbuffer mapped after it goes."""
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"model{litert.SUFFIX}"
            self.convert(path, cached=False)
            return self.classifier(litert.Runner(path), litert.NAME)

    def convert(self, path: Path, cached: bool) -> None:
        """Convert, saying so even off a terminal: it is the one step that takes tens of
        seconds."""
        name = self.network.record.name
        when = "once, then cached" if cached else "for this run only"
        model = self.built()
        with status(self.env, f"converting {name} for LiteRT ({when})", announce=True):
            try:
                litert.convert(model, path)
            except Exception as exc:
                raise ConversionError(
                    f"{name} does not convert to LiteRT ({first_line(exc)})"
                ) from exc


def _runner(path: Path, arch: Arch) -> litert.Runner:
    """Load a cached flatbuffer, refusing one whose input does not match the record."""
    runner = litert.Runner(path)
    if runner.input_size != arch.input_size:
        raise ValueError(f"input {runner.input_size} px, expected {arch.input_size}")
    return runner
