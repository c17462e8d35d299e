"""int8 post-training quantization (issue 12): the model it writes, its calibration set, and its
accuracy against float32 with the real MobileNet-0.25 weights.

One conversion for the whole module: MobileNet-0.25 with its real ImageNet weights where
../shared is present, else with seeded random weights (whose scores are not flat), so that the
structural checks run everywhere. The float32 reference is the Keras model itself.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cnncli import litert, quantize, registry
from cnncli.errors import CnnError
from cnncli.images import Resize, load_array
from cnncli.loader import Weights, build
from cnncli.preprocess import preprocess
from tests.conftest import MOBILENET_WEIGHTS, PHOTOS, SAMPLES, needs_shared, seeded_model

ARCH = registry.get("mobilenet_0.25")
SAMPLE_PHOTOS = sorted(SAMPLES.glob("*.jpg"))


def pixels(paths: list[Path]) -> np.ndarray:
    photos = np.stack([load_array(p, ARCH.input_size, Resize.crop) for p in paths])
    return preprocess(photos, ARCH.preprocessing)


@pytest.fixture(scope="module")
def quantized(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """(the Keras model, its int8 flatbuffer calibrated on the sample images by default)."""
    if MOBILENET_WEIGHTS.is_file():
        model = build(ARCH, Weights("file", MOBILENET_WEIGHTS))
    else:
        model = seeded_model(ARCH.name, seed=0)
    calibration = quantize.calibration_set(SAMPLE_PHOTOS, ARCH, quantize.Recipe())
    path = tmp_path_factory.mktemp("int8") / "model.tflite"
    quantize.convert_int8(model, calibration.samples, path)
    return model, path


def both(quantized: tuple[Any, Path], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(float32 scores from Keras, int8 scores from LiteRT) for the same pixels."""
    model, path = quantized
    return np.asarray(model(x, training=False)), litert.Runner(path, threads=2)(x)


def test_weights_and_activations_are_int8_with_float_input_and_output(quantized):
    runner = litert.Runner(quantized[1])
    interpreter = runner.interpreter
    (source,), (sink,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert source["dtype"] == np.float32 and sink["dtype"] == np.float32
    tensors = interpreter.get_tensor_details()
    floats = {t["index"] for t in tensors if t["dtype"] == np.float32}
    assert floats == {source["index"], sink["index"]}  # only the two ends, quantized at once
    int8 = [t for t in tensors if t["dtype"] == np.int8]
    assert len(int8) >= 2 * 27  # every convolution's kernel and output (27 convolutions)
    assert all(t["quantization_parameters"]["scales"].size > 0 for t in int8)


def test_int8_top1_agrees_with_float32_on_the_sample_images(quantized):
    fp32, int8 = both(quantized, pixels(SAMPLE_PHOTOS))
    assert len(set(fp32.argmax(1).tolist())) > 1  # the photos do not all get one class
    assert fp32.argmax(1).tolist() == int8.argmax(1).tolist()


@needs_shared
def test_real_weights_int8_keeps_top1_and_top5_hits_on_the_shared_photos(quantized):
    expected = json.loads((PHOTOS / "expected.json").read_text())
    fp32, int8 = both(quantized, pixels([PHOTOS / name for name in expected]))
    top1 = zip(expected, fp32.argmax(1), int8.argmax(1), strict=True)
    assert len([name for name, a, b in top1 if a != b]) <= 1, (fp32.argmax(1), int8.argmax(1))

    def top5_hits(scores: np.ndarray) -> int:
        top5 = np.argsort(-scores, axis=1)[:, :5]
        pairs = zip(top5.tolist(), expected.values(), strict=True)
        return sum(bool(set(row) & set(accepted)) for row, accepted in pairs)

    assert top5_hits(int8) >= top5_hits(fp32) - 1


def test_fingerprint_follows_the_content_not_the_names(tmp_path):
    recipe = quantize.Recipe()
    copies = []
    for number, photo in enumerate(SAMPLE_PHOTOS):
        copies.append(tmp_path / f"renamed-{number}.jpg")
        shutil.copyfile(photo, copies[-1])
    original = quantize.fingerprint(SAMPLE_PHOTOS, recipe)
    assert quantize.fingerprint(copies, recipe) == original
    assert quantize.fingerprint(copies, quantize.Recipe(samples=16)) != original
    data = bytearray(copies[0].read_bytes())
    data[len(data) // 2] ^= 0xFF
    copies[0].write_bytes(bytes(data))
    assert quantize.fingerprint(copies, recipe) != original
    assert quantize.fingerprint(SAMPLE_PHOTOS, recipe) == original  # the originals untouched


def test_calibration_set_is_the_evaluation_view_then_its_variants(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a photo")
    photos = [*SAMPLE_PHOTOS[:2], broken]
    calibration = quantize.calibration_set(photos, ARCH, quantize.Recipe(samples=7))
    assert [e.image for e in calibration.skipped] == [str(broken)]
    samples = calibration.samples
    assert samples.shape == (7, ARCH.input_size, ARCH.input_size, 3)
    assert np.array_equal(samples[:2], pixels(SAMPLE_PHOTOS[:2]))  # what classification sees
    assert np.array_equal(samples[2], samples[0][:, ::-1])  # then its mirror image
    assert all(not np.array_equal(samples[k], samples[k - 2]) for k in range(4, 7))  # then crops


def test_calibration_without_a_readable_photo_is_an_error(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG truncated")
    with pytest.raises(CnnError, match="no readable photo"):
        quantize.calibration_set([broken, tmp_path / "missing.jpg"], ARCH, quantize.Recipe())
