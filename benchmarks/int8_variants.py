"""Why int8 is no faster than float32 on LiteRT here: one model, every knob, both runtimes.

    python benchmarks/int8_variants.py [--arch resnet50] [--batch 16] [--rounds 4]

Converts the architecture (random weights: speed does not depend on their values) to float32
and to int8 in the converter's variants (`quantize.configure_int8` as cnn does it; per-tensor
weights; the old quantizer; int8 input and output; dynamic-range weights only), then times each
file on LiteRT (XNNPACK, with and without its latest features, and without XNNPACK) and, where
installed, on OpenVINO (`openvino_engine.Runner`), printing images/s. Run it under another LiteRT
(`pip install --target DIR ai-edge-litert==X`, `PYTHONPATH=DIR`) to compare releases.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cnncli import openvino_engine, quantize, registry  # noqa: E402
from cnncli.loader import Weights, build  # noqa: E402
from cnncli.quiet import native_output_silenced  # noqa: E402
from cnncli.tf_runtime import import_keras  # noqa: E402


def variants(model: object, calibration: np.ndarray) -> dict[str, Callable[[object], None]]:
    """Converter settings by name, each applied to a fresh `TFLiteConverter`."""
    import tensorflow as tf

    def int8(**flags: object) -> Callable[[object], None]:
        def configure(converter: object) -> None:
            quantize.configure_int8(converter, calibration)
            for name, value in flags.items():
                setattr(converter, name, value)

        return configure

    def dynamic(converter: object) -> None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]  # type: ignore[attr-defined]

    return {
        "fp32": lambda converter: None,
        "int8": int8(),
        "int8 per-tensor": int8(_experimental_disable_per_channel=True),
        "int8 old quantizer": int8(experimental_new_quantizer=False),
        "int8 int8-io": int8(inference_input_type=tf.int8, inference_output_type=tf.int8),
        "dynamic range": dynamic,
    }


def convert(arch: registry.Arch, folder: Path) -> dict[str, Path]:
    """Each variant's flatbuffer in `folder`."""
    import_keras()
    import tensorflow as tf

    model = build(arch, Weights("none"))
    rng = np.random.default_rng(0)
    calibration = rng.uniform(-1, 1, (16, arch.input_size, arch.input_size, 3)).astype("float32")
    paths = {}
    for name, configure in variants(model, calibration).items():
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        configure(converter)
        with native_output_silenced():
            paths[name] = folder / f"{name.replace(' ', '_')}.tflite"
            paths[name].write_bytes(converter.convert())
        print(f"converted {name}", flush=True)
    return paths


def litert_runner(path: Path, batch: np.ndarray, options: dict[str, object]) -> Callable[[], None]:
    """One invoke of the file on LiteRT with interpreter `options`, input quantized if int8."""
    from ai_edge_litert.interpreter import Interpreter

    with native_output_silenced():
        interpreter = Interpreter(model_path=str(path), num_threads=2, **options)
    source = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(source["index"], list(batch.shape))
    interpreter.allocate_tensors()
    if source["dtype"] == np.int8:
        scale, zero = source["quantization"]
        batch = np.clip(np.round(batch / scale + zero), -128, 127).astype(np.int8)

    def run() -> None:
        interpreter.set_tensor(source["index"], batch)
        interpreter.invoke()

    return run


def rate(run: Callable[[], None], images: int, rounds: int) -> float:
    run()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return images / statistics.median(times)


def main() -> None:
    from ai_edge_litert import interpreter as litert_interpreter

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    arch = registry.get(args.arch)
    size = arch.input_size
    batch = np.random.default_rng(1).uniform(-1, 1, (args.batch, size, size, 3)).astype("float32")
    resolver = litert_interpreter.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    runtimes = {
        "LiteRT XNNPACK": {},
        "LiteRT XNNPACK latest": {"experimental_default_delegate_latest_features": True},
        "LiteRT no XNNPACK": {"experimental_op_resolver_type": resolver},
    }
    with tempfile.TemporaryDirectory(prefix="cnncli-int8-variants-") as folder:
        paths = convert(arch, Path(folder))
        print(f"\n{arch.name}, batch {args.batch}, images/s (median of {args.rounds}):")
        for name, path in paths.items():
            figures = {
                runtime: rate(litert_runner(path, batch, options), args.batch, args.rounds)
                for runtime, options in runtimes.items()
            }
            if openvino_engine.available() and "int8-io" not in name:
                run = functools.partial(openvino_engine.Runner(path), batch)
                figures["OpenVINO"] = rate(run, args.batch, args.rounds)
            print(f"  {name:20s} " + ", ".join(f"{k} {v:.1f}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
