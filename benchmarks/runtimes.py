"""Measure the two candidate compiled runtimes, LiteRT and OpenVINO, on the same models.

    pip install ai-edge-litert openvino && python benchmarks/runtimes.py

For each model (random weights; timing does not depend on their values): conversion time from
Keras, and in a fresh process per runtime: import, load, first inference, then the median
per-image latency at batch 1 and images/s at batch 16, and the largest difference from Keras.
The result and the choice it led to are in benchmarks/README.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODELS = {"resnet50": ("ResNet50", 224), "mobilenet_v2": ("MobileNetV2", 224)}

CHILD = r"""
import json, statistics, sys, time
start = time.perf_counter()
import numpy as np
runtime, model, inputs, reference = sys.argv[1:5]
x, ref = np.load(inputs), np.load(reference)
t = time.perf_counter()
if runtime == "litert":
    from ai_edge_litert.interpreter import Interpreter
    imported = time.perf_counter() - t; t = time.perf_counter()
    it = Interpreter(model_path=model, num_threads=2)
    index_in, index_out = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    shape = [None]
    def run(b):
        if shape[0] != b.shape:
            it.resize_tensor_input(index_in, list(b.shape))
            it.allocate_tensors()
            shape[0] = b.shape
        it.set_tensor(index_in, b); it.invoke(); return it.get_tensor(index_out)
else:
    import openvino as ov
    imported = time.perf_counter() - t; t = time.perf_counter()
    compiled = ov.Core().compile_model(model, "CPU")
    request = compiled.create_infer_request()
    run = lambda b: request.infer({0: b})[compiled.output(0)]
loaded = time.perf_counter() - t; t = time.perf_counter()
run(x[:1]); first = time.perf_counter() - t
error = float(np.abs(run(x[:4]) - ref).max())
def median(f, n=5):
    f(); times = []
    for _ in range(n):
        t = time.perf_counter(); f(); times.append(time.perf_counter() - t)
    return statistics.median(times)
single = median(lambda: run(x[:1]))
batch = np.repeat(x[:1], 16, axis=0)
per_batch = median(lambda: run(batch))
print(json.dumps({"import_ms": imported * 1e3, "load_ms": loaded * 1e3, "first_ms": first * 1e3,
                  "ms_per_image": single * 1e3, "images_per_s_b16": 16 / per_batch,
                  "max_abs_diff": error, "process_s": time.perf_counter() - start}))
"""


def convert(name: str, folder: Path) -> dict[str, float]:
    import keras
    import numpy as np
    import openvino as ov
    import tensorflow as tf

    constructor, size = MODELS[name]
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, constructor)(weights=None, input_shape=(size, size, 3))
    x = np.random.default_rng(0).uniform(-1, 1, (4, size, size, 3)).astype("float32")
    np.save(folder / f"{name}_x.npy", x)
    np.save(folder / f"{name}_ref.npy", model.predict_on_batch(x))
    t = time.perf_counter()
    (folder / f"{name}.tflite").write_bytes(
        tf.lite.TFLiteConverter.from_keras_model(model).convert()
    )
    litert_s = time.perf_counter() - t
    t = time.perf_counter()
    converted = ov.convert_model(model)
    converted.reshape([-1, size, size, 3])
    ov.save_model(converted, str(folder / f"{name}.xml"))
    return {"litert": litert_s, "openvino": time.perf_counter() - t}


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="cnncli-runtimes-"))
    rows = []
    for name in MODELS:
        conversion = convert(name, folder)
        for runtime, suffix in (("litert", ".tflite"), ("openvino", ".xml")):
            args = [
                runtime,
                folder / f"{name}{suffix}",
                folder / f"{name}_x.npy",
                folder / f"{name}_ref.npy",
            ]
            out = subprocess.run(
                [sys.executable, "-c", CHILD, *map(str, args)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            figures = json.loads(out.strip().splitlines()[-1])
            rows.append(
                {"model": name, "runtime": runtime, "convert_s": conversion[runtime], **figures}
            )
            print(json.dumps(rows[-1]), flush=True)


if __name__ == "__main__":
    main()
