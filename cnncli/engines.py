"""Engines: what runs a registry record's forward pass, and how `--engine auto` chooses.

A `Classifier` pairs a registry record with a forward pass (a batch of preprocessed pixels in,
softmax scores out), so preprocessing and decoding derive from the record and are never restated
by callers. `keras` is the reference: always there, needed for summaries and Grad-CAM. `litert`
runs a LiteRT conversion of the same model from the compiled-model cache, without importing
TensorFlow once the entry exists. `auto` takes `litert` when its runtime is installed and the
model converts, and says when it falls back. `--precision int8` runs only on `litert`: an int8
model is a quantized LiteRT flatbuffer (`quantize`), which Keras, running float graphs, cannot run.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnncli import litert, loader, quantize, registry
from cnncli.cache import CacheUnwritable, ModelCache
from cnncli.choices import Engine, Precision
from cnncli.env import Environment
from cnncli.errors import CnnError, UsageError, first_line
from cnncli.preprocess import preprocess
from cnncli.progress import status
from cnncli.registry import Arch

Forward = Callable[[np.ndarray], np.ndarray]


@dataclass
class Classifier:
    """A registry record with its weights, and its forward pass (preprocessed batch -> softmax
    scores).

    Which engine runs the pass (`engines.open_classifier` chooses) and in which precision are
    recorded for the output, and the compiled model's size for `cnn bench`.
    """

    arch: Arch
    weights: loader.Weights
    forward: Forward
    engine: str
    precision: str = Precision.fp32.value
    #: Bytes of the compiled model file; None on Keras, which runs the weights it loaded.
    model_bytes: int | None = None

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
    arch: Arch,
    weights: loader.Weights,
    choice: Engine,
    env: Environment,
    precision: Precision = Precision.fp32,
    calibrate: str | None = None,
) -> Classifier:
    """A classifier for `arch` with `weights` on the engine `choice` resolves to, in `precision`
    (int8: calibrated on the photos `calibrate` names, else on the sample images)."""
    check_precision(choice, precision, calibrate)
    if precision is Precision.int8:
        return _int8(arch, weights, env, quantize.CalibrationSource.parse(calibrate))
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


def check_precision(choice: Engine, precision: Precision, calibrate: str | None) -> None:
    """Refuse the combinations that cannot run, before anything is loaded or written."""
    if precision is Precision.int8 and choice is Engine.keras:
        raise UsageError(
            "--precision int8 runs on the LiteRT engine: Keras runs float graphs, and an int8 "
            "model is a quantized LiteRT model (use --engine auto or litert)"
        )
    if precision is Precision.fp32 and calibrate is not None:
        raise UsageError("--calibrate calibrates int8 models: add --precision int8")


def _int8(
    arch: Arch, weights: loader.Weights, env: Environment, source: quantize.CalibrationSource
) -> Classifier:
    """The int8 model on LiteRT, with one warning line where int8 was measured to stray from
    float32. A model that does not quantize is an error, never a silent float32 run."""
    if not litert.available():
        raise CnnError("--precision int8 needs the LiteRT runtime: pip install ai-edge-litert")
    fidelity = registry.int8_fidelity(arch)
    if fidelity.warn:
        env.warn(
            f"{arch.name} in int8: top-1 matched float32 on {fidelity.share:.0%} of the views "
            f"measured on {fidelity.measured_on} ({fidelity.weights} weights, benchmarks/INT8.md)"
        )
    if weights.source == "none":  # random weights are never cached
        return _uncached(arch, weights, keras_model(arch, weights, env), env, source)
    return _litert(arch, weights, Engine.litert, env, source)


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


def _litert(
    arch: Arch,
    weights: loader.Weights,
    choice: Engine,
    env: Environment,
    int8: quantize.CalibrationSource | None = None,
) -> Classifier:
    """From the cache when the entry exists, is intact and loads; converted (and stored)
    otherwise; quantized to int8 when calibrated on `int8`. A cache that cannot be written is not
    a reason to fail: `auto` runs the model on Keras, `litert` converts it for this run alone."""
    if weights.source == "none":  # random weights are never cached
        return _uncached(arch, weights, keras_model(arch, weights, env), env, int8)
    cache = ModelCache(env.cache_dir)
    precision = Precision.fp32 if int8 is None else Precision.int8
    key = cache.key(arch, weights, litert.NAME, precision.value, int8.fingerprint() if int8 else "")
    path = cache.lookup(key, litert.SUFFIX)
    if path is not None:
        try:
            cache.verify(path)
            return _compiled(arch, weights, path, precision)
        except (ValueError, RuntimeError) as exc:  # a `ChangedEntry`, or a file LiteRT refuses
            env.warn(f"cache entry {path.name} is unusable ({exc}); rebuilding it")
            cache.discard(path)
    model = keras_model(arch, weights, env)
    try:
        path = cache.store(
            key, litert.SUFFIX, lambda tmp: _convert(arch, model, tmp, env, True, int8)
        )
    except CacheUnwritable as exc:
        if choice is Engine.auto:
            env.warn(f"{exc}; running {arch.name} on Keras")
            return Classifier(arch, weights, keras_forward(model), "keras")
        env.warn(f"{exc}; converting {arch.name} for this run only")
        return _uncached(arch, weights, model, env, int8)
    return _compiled(arch, weights, path, precision)


def _uncached(
    arch: Arch,
    weights: loader.Weights,
    model: object,
    env: Environment,
    int8: quantize.CalibrationSource | None,
) -> Classifier:
    """Convert into a temporary folder; the runner keeps the flatbuffer mapped after it goes."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"model{litert.SUFFIX}"
        _convert(arch, model, path, env, False, int8)
        return _compiled(arch, weights, path, Precision.fp32 if int8 is None else Precision.int8)


def _compiled(arch: Arch, weights: loader.Weights, path: Path, precision: Precision) -> Classifier:
    return Classifier(
        arch, weights, _runner(path, arch), litert.NAME, precision.value, path.stat().st_size
    )


def _convert(
    arch: Arch,
    model: object,
    path: Path,
    env: Environment,
    cached: bool,
    int8: quantize.CalibrationSource | None,
) -> None:
    """Convert (quantize, with `int8`), saying so even off a terminal: it is the one step that
    takes tens of seconds, and the calibration set decides the int8 model."""
    when = "once, then cached" if cached else "for this run only"
    if int8 is None:
        doing = f"converting {arch.name} for LiteRT ({when})"
    else:
        doing = (
            f"quantizing {arch.name} to int8 for LiteRT, calibrated on {int8.describe()} ({when})"
        )
    with status(env, doing, announce=True):
        if int8 is None:
            write = functools.partial(litert.convert, model)
        else:
            write = functools.partial(quantize.convert_int8, model, int8.samples(arch, env.warn))
        try:
            write(path)
        except Exception as exc:
            reason = f"{arch.name} does not convert to LiteRT ({first_line(exc)})"
            raise ConversionError(reason) from exc


def _runner(path: Path, arch: Arch) -> litert.Runner:
    """Load a cached flatbuffer, refusing one whose input does not match the record."""
    runner = litert.Runner(path)
    if runner.input_size != arch.input_size:
        raise ValueError(f"input {runner.input_size} px, expected {arch.input_size}")
    return runner
