"""The compiled engine: Keras models converted once to LiteRT flatbuffers, run with XNNPACK.

Measured on this project's 2-core machine (benchmarks/README.md): a cached ResNet50 loads and
answers in a fraction of a second without TensorFlow, where Keras needs seconds to import,
build and trace. Conversion needs TensorFlow and happens once per cache entry.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np

from cnncli.quiet import native_output_silenced

NAME = "litert"
INSTALL = "pip install ai-edge-litert"
SUFFIX = ".tflite"


def available() -> bool:
    """Whether the LiteRT runtime (PyPI `ai-edge-litert`) is installed."""
    return importlib.util.find_spec("ai_edge_litert") is not None


def convert(model: Any, path: Path) -> None:
    """Write `model` (Keras) as a LiteRT flatbuffer, with none of the converter's logging."""
    from cnncli.tf_runtime import import_keras

    import_keras()
    import tensorflow as tf

    with native_output_silenced():
        flatbuffer = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    path.write_bytes(flatbuffer)


class Runner:
    """A loaded flatbuffer: batches of preprocessed pixels in, scores out.

    The runtime reads the model in place from the bytes it is given, which the runner keeps
    (`flatbuffer`): what a cluster's workers are sent is the very model this runner runs,
    whatever produced it (the cache, a conversion for one run)."""

    def __init__(self, model: Path | bytes, threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.flatbuffer = model if isinstance(model, bytes) else model.read_bytes()
        with native_output_silenced():  # the runtime announces its XNNPACK delegate on fd 2
            self.interpreter = Interpreter(
                model_content=self.flatbuffer, num_threads=threads or os.cpu_count() or 1
            )
        self.input = self.interpreter.get_input_details()[0]["index"]
        self.output = self.interpreter.get_output_details()[0]["index"]
        self.shape: tuple[int, ...] | None = None

    @property
    def input_size(self) -> int:
        return int(self.interpreter.get_input_details()[0]["shape"][1])

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Run one batch; the input tensor is resized only when the batch size changes."""
        if batch.shape != self.shape:
            self.interpreter.resize_tensor_input(self.input, list(batch.shape))
            with native_output_silenced():
                self.interpreter.allocate_tensors()
            self.shape = batch.shape
        self.interpreter.set_tensor(self.input, np.ascontiguousarray(batch, dtype=np.float32))
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output).copy()
