"""Engines: what runs a network's forward pass, and how `--engine auto` chooses.

A `Classifier` pairs a network (a registry architecture with weights, or a trained model: see
`networks`) with a forward pass (a batch of preprocessed pixels in, softmax scores out), so
preprocessing, decoding and labels derive from the network and are never restated by callers.
`keras` is the reference: always there, needed for summaries and Grad-CAM. `litert` runs a
LiteRT conversion of the same model from the compiled-model cache, without importing TensorFlow
once the entry exists; `openvino` runs the same entry with OpenVINO's CPU plugin (an optional
extra). `auto` takes `litert` when its runtime is installed and the model converts, and says
when it falls back. `--precision int8` runs only on the compiled engines: an int8 model is a
quantized LiteRT flatbuffer (`quantize`), which Keras, running float graphs, cannot run.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnncli import litert, openvino_engine, quantize, registry
from cnncli.cache import CacheUnwritable, ModelCache
from cnncli.choices import Engine, Precision
from cnncli.env import Environment
from cnncli.errors import CnnError, UsageError, first_line
from cnncli.labels import Labels
from cnncli.networks import Network, tag
from cnncli.preprocess import preprocess
from cnncli.progress import status
from cnncli.registry import Arch

Forward = Callable[[np.ndarray], np.ndarray]
Runner = litert.Runner | openvino_engine.Runner

#: What runs a compiled model on each engine that runs one: a module with `NAME`, `INSTALL`,
#: `available()` and `Runner(model, threads)`.
RUNTIMES = {Engine.litert: litert, Engine.openvino: openvino_engine}


@dataclass
class Classifier:
    """A network and its forward pass (preprocessed batch -> softmax scores).

    Which engine runs the pass (`engines.open_classifier` chooses) and in which precision are
    recorded for the output, the compiled model's size for `cnn bench`, and `tag`
    (`networks.tag`) names the model in every result.
    """

    network: Network
    forward: Forward
    engine: str
    tag: str
    precision: str = Precision.fp32.value
    #: Bytes of the compiled model file; None on Keras, which runs the weights it loaded.
    model_bytes: int | None = None

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


def open_classifier(
    network: Network,
    choice: Engine,
    env: Environment,
    precision: Precision = Precision.fp32,
    calibrate: str | None = None,
) -> Classifier:
    """A classifier for `network` on the engine `choice` resolves to, in `precision` (int8:
    calibrated on the photos `calibrate` names, else on the sample images)."""
    return Opening(network, env, precision, calibrate).open(choice)


def flatbuffer(classifier: Classifier) -> bytes:
    """The LiteRT model a classifier runs, for workers that load it without TensorFlow."""
    if not isinstance(classifier.forward, litert.Runner):
        raise CnnError(f"{classifier.arch.name} runs on {classifier.engine}, not on LiteRT")
    return classifier.forward.flatbuffer


def check_precision(choice: Engine, precision: Precision, calibrate: str | None) -> None:
    """Refuse the combinations that cannot run, before anything is loaded or written."""
    if precision is Precision.int8 and choice is Engine.keras:
        raise UsageError(
            "--precision int8 runs on the compiled engines: Keras runs float graphs, and an "
            "int8 model is a quantized LiteRT model (use --engine auto, litert or openvino)"
        )
    if precision is Precision.fp32 and calibrate is not None:
        raise UsageError("--calibrate calibrates int8 models: add --precision int8")


def keras_model(network: Network, env: Environment) -> Any:
    """The Keras model, with a spinner while it builds and loads its weights."""
    with status(env, f"loading {network.record.name} ({network.weights} weights)"):
        return network.keras_model()


class Opening:
    """A network being opened in a precision: its cache, its content's identity and tag (known
    before any model loads, so a run can check its output against them first; an int8 model is
    another model), its Keras model once built. Impossible combinations are refused first."""

    def __init__(
        self,
        network: Network,
        env: Environment,
        precision: Precision = Precision.fp32,
        calibrate: str | None = None,
    ) -> None:
        self.network = network
        self.env = env
        self.precision = precision
        self.calibration = (
            quantize.CalibrationSource.parse(calibrate) if precision is Precision.int8 else None
        )
        check_precision(Engine.auto, precision, calibrate)  # --calibrate without int8
        self.cache = ModelCache(env.cache_dir)
        self.identity = network.identity(self.cache)
        #: The calibration set's content (its photos are hashed once, for the tag and the key).
        self.fingerprint = "" if self.calibration is None else self.calibration.fingerprint()
        int8 = f"+int8:{self.fingerprint[:12]}" if self.calibration is not None else ""
        self.tag = tag(network, self.identity) + int8
        self.model: Any = None

    def open(self, choice: Engine) -> Classifier:
        """The classifier on the engine `choice` resolves to."""
        check_precision(choice, self.precision, None)
        if self.calibration is not None:
            return self.int8(choice)
        if choice is Engine.keras or (choice is Engine.auto and not litert.available()):
            return self.keras()
        engine = Engine.litert if choice is Engine.auto else choice
        require(engine)
        if choice is Engine.auto and self.network.random:
            return self.keras()  # random weights: converting costs more than it saves
        try:
            return self.compiled(choice, engine)
        except ConversionError as exc:
            if choice is not Engine.auto:
                raise
            self.env.warn(f"{exc}; running it on Keras instead")
            return self.keras()

    def int8(self, choice: Engine) -> Classifier:
        """The int8 model on `choice` (`auto`: LiteRT, whose int8 arithmetic kept float32's
        top-1 more often than OpenVINO's: benchmarks/README.md), with one warning line where int8
        was measured to stray from float32. A model that does not quantize is an error, never a
        silent float32 run."""
        engine = Engine.litert if choice is Engine.auto else choice
        require(engine)
        record = self.network.record
        fidelity = registry.int8_fidelity(record)
        if fidelity.warn:
            self.env.warn(
                f"{record.name} in int8: top-1 matched float32 on {fidelity.share:.0%} of the "
                f"views measured on {fidelity.measured_on} ({fidelity.weights} weights, "
                "benchmarks/INT8.md)"
            )
        return self.compiled(engine, engine)

    def classifier(self, forward: Forward, engine: str, path: Path | None = None) -> Classifier:
        size = None if path is None else path.stat().st_size
        return Classifier(self.network, forward, engine, self.tag, self.precision.value, size)

    def built(self) -> Any:
        if self.model is None:
            self.model = keras_model(self.network, self.env)
        return self.model

    def keras(self) -> Classifier:
        return self.classifier(keras_forward(self.built()), "keras")

    def compiled(self, choice: Engine, engine: Engine) -> Classifier:
        """The LiteRT model on `engine`'s runtime: from the cache when the entry exists, is
        intact and loads; converted (and stored) otherwise. A cache that cannot be written is
        not a reason to fail: `auto` runs the model on Keras, an engine the user named converts
        it for this run alone."""
        network, cache, env = self.network, self.cache, self.env
        if network.random:  # random weights are never cached
            return self.uncached(engine)
        key = cache.key(
            network.record, self.identity, litert.NAME, self.precision.value, self.fingerprint
        )
        path = cache.lookup(key, litert.SUFFIX)
        if path is not None:
            try:
                cache.verify(path)
                return self.loaded(path, engine)
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
            return self.uncached(engine)
        return self.loaded(path, engine)

    def loaded(self, path: Path, engine: Engine) -> Classifier:
        runner = load_runner(path, self.network.record, engine=engine)
        return self.classifier(runner, RUNTIMES[engine].NAME, path)

    def uncached(self, engine: Engine) -> Classifier:
        """Convert into a temporary folder; the runner keeps what it needs after the folder goes
        (LiteRT the flatbuffer's bytes, OpenVINO the compiled model)."""
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"model{litert.SUFFIX}"
            self.convert(path, cached=False)
            return self.loaded(path, engine)

    def convert(self, path: Path, cached: bool) -> None:
        """Convert (quantize, when int8), saying so even off a terminal: it is the one step that
        takes tens of seconds, and the calibration set decides the int8 model."""
        record, int8 = self.network.record, self.calibration
        name = record.name
        when = "once, then cached" if cached else "for this run only"
        model = self.built()
        if int8 is None:
            doing = f"converting {name} for LiteRT ({when})"
            write = functools.partial(litert.convert, model)
        else:
            calibrated = f"calibrated on {int8.describe()}"
            doing = f"quantizing {name} to int8 for LiteRT, {calibrated} ({when})"
            write = functools.partial(
                quantize.convert_int8, model, int8.samples(record, self.env.warn)
            )
        with status(self.env, doing, announce=True):
            try:
                write(path)
            except Exception as exc:
                raise ConversionError(
                    f"{name} does not convert to LiteRT ({first_line(exc)})"
                ) from exc


def require(engine: Engine) -> None:
    """Refuse a compiled engine whose runtime is not installed, saying how to install it."""
    runtime = RUNTIMES[engine]
    if not runtime.available():
        raise CnnError(f"--engine {engine.value} needs its runtime: {runtime.INSTALL}")


def load_runner(
    model: Path | bytes, arch: Arch, threads: int | None = None, engine: Engine = Engine.litert
) -> Runner:
    """Load a flatbuffer (a cache entry, or the bytes a cluster's worker was sent) on `engine`'s
    runtime, refusing one whose input does not match the record."""
    runner = RUNTIMES[engine].Runner(model, threads)
    if runner.input_size != arch.input_size:
        raise ValueError(f"input {runner.input_size} px, expected {arch.input_size}")
    return runner
