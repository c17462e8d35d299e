"""The OpenVINO engine: the compiled-model cache's LiteRT flatbuffers, run by OpenVINO's CPU plugin.

Why a second runtime for the same file: on CPUs without VNNI (AVX2 only, like this project's
machine), LiteRT's XNNPACK runs int8 models no faster than float32 ones, while OpenVINO's
int8 kernels (oneDNN) run them about twice as fast (benchmarks/README.md, "int8 speed"). OpenVINO
reads the quantized flatbuffer directly, so the model, its calibration and its cache entry are
the same on both engines; only the arithmetic's rounding differs.

The batch is split across OpenVINO's throughput streams (one per core here), each running its
share on one thread: on two cores that measured faster than two threads on one request.
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

import numpy as np

NAME = "openvino"
INSTALL = 'pip install "cnncli[openvino]"'


def available() -> bool:
    """Whether the OpenVINO runtime (PyPI `openvino`) is installed."""
    return importlib.util.find_spec("openvino") is not None


class Runner:
    """A flatbuffer compiled for the CPU: batches of preprocessed pixels in, scores out.

    The batch dimension is compiled dynamic, so a run's last, shorter batch costs no
    recompilation. `threads` caps the threads all streams share (default: every core)."""

    def __init__(self, model: Path | bytes, threads: int | None = None) -> None:
        import openvino as ov

        core = ov.Core()
        if isinstance(model, bytes):  # OpenVINO reads LiteRT models from files only
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / "model.tflite"
                path.write_bytes(model)
                network = core.read_model(path)
        else:
            network = core.read_model(model)
        shape = network.inputs[0].get_partial_shape()
        self.input_size = shape[1].get_length()
        network.reshape([-1, *(dim.get_length() for dim in list(shape)[1:])])
        config: dict[str, object] = {"PERFORMANCE_HINT": "THROUGHPUT"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        compiled = core.compile_model(network, "CPU", config)
        self.streams = max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        self.queue = ov.AsyncInferQueue(compiled, self.streams)
        self.queue.set_callback(self._collect)
        self.results: dict[int, np.ndarray] = {}

    def _collect(self, request: object, part: int) -> None:
        self.results[part] = request.get_output_tensor(0).data.copy()  # type: ignore[attr-defined]

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Run one batch, its parts on the streams in parallel; scores in the batch's order."""
        parts = np.array_split(np.ascontiguousarray(batch, dtype=np.float32), self.streams)
        self.results.clear()
        for number, part in enumerate(p for p in parts if len(p)):
            self.queue.start_async({0: part}, number)
        self.queue.wait_all()
        return np.concatenate([self.results[number] for number in sorted(self.results)])
