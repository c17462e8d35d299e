"""int8 post-training quantization (issue 12): the model it writes, its calibration set, and its
accuracy against float32 with the real MobileNet-0.25 weights.

One conversion for the whole module, by the command line itself (`cnn classify --precision
int8`, which caches it): MobileNet-0.25 with its real ImageNet weights where ../shared is
present, else with seeded random weights (whose scores are not flat), so that the structural
checks run everywhere. The float32 reference is the Keras model itself.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import cnncli
from cnncli import litert, quantize, registry
from cnncli.cache import ModelCache
from cnncli.env import Environment
from cnncli.errors import CnnError
from cnncli.images import Resize, load_array
from cnncli.loader import Weights, build
from cnncli.networks import RegistryNetwork
from cnncli.preprocess import preprocess
from tests.conftest import (
    MOBILENET_WEIGHTS,
    PHOTOS,
    SAMPLES,
    Run,
    needs_shared,
    run_cli,
    seeded_model,
    top5_hits,
)

ARCH = registry.get("mobilenet_0.25")
SAMPLE_PHOTOS = sorted(SAMPLES.glob("*.jpg"))
INT8_RUN = ("classify", *SAMPLE_PHOTOS, "-a", ARCH.name, "--precision", "int8", "-f", "json")


def pixels(paths: list[Path]) -> np.ndarray:
    photos = np.stack([load_array(p, ARCH.input_size, Resize.crop) for p in paths])
    return preprocess(photos, ARCH.preprocessing)


@pytest.fixture(scope="module")
def cached(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Run]:
    """(weights file, compiled-model cache, the run): one `cnn classify --precision int8` of
    MobileNet-0.25 on the sample images, calibrated by default, which fills the cache."""
    folder = tmp_path_factory.mktemp("int8")
    weights = MOBILENET_WEIGHTS
    if not weights.is_file():
        weights = folder / "seeded.weights.h5"
        seeded_model(ARCH.name, seed=0).save_weights(weights)
    run = run_cli(*INT8_RUN, "-w", weights, tmp=folder / "cache")
    assert run.exit_code == 0, run.stderr
    return weights, folder / "cache", run


@pytest.fixture(scope="module")
def quantized(cached: tuple[Path, Path, Run]) -> tuple[Any, Path]:
    """(the Keras model, the int8 flatbuffer `cnn` cached for it)."""
    weights, cache, _ = cached
    (entry,) = ModelCache(cache).entries()
    return build(ARCH, Weights("file", weights)), entry.path


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
    accepted = list(expected.values())
    assert top5_hits(int8, accepted) >= top5_hits(fp32, accepted) - 1


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


def test_classify_int8_runs_the_quantized_model_and_says_so(cached, cli):
    weights, cache, run = cached
    doc = run.json()
    assert (doc["engine"], doc["precision"]) == ("litert", "int8")
    assert (
        "quantizing mobilenet_0.25 to int8 for LiteRT, calibrated on 4 sample images, "
        "augmented to 64 (once, then cached)" in run.stderr
    )
    (warning,) = [line for line in run.stderr.splitlines() if "in int8" in line]
    assert warning == (
        "cnn: warning: mobilenet_0.25 in int8: top-1 matched float32 on 78% of the views "
        "measured on mobilenet_0.25 (imagenet weights, benchmarks/INT8.md)"
    )
    keras = cli(*INT8_RUN, "-w", weights, "--precision", "fp32", "-e", "keras", tmp=cache).json()
    assert keras["precision"] == "fp32"
    steps = [p["score"] * 256 for r in doc["results"] for p in r["predictions"]]
    assert np.allclose(steps, np.round(steps), atol=1e-3)  # the int8 softmax: 1/256 steps
    top1 = [[r["predictions"][0]["index"] for r in d["results"]] for d in (doc, keras)]
    assert top1[0] == top1[1]
    model = cnncli.load(ARCH.name, weights, precision="int8", env=Environment(cache_dir=cache))
    assert (model.engine, model.classifier.precision) == ("litert", "int8")  # from the cache


def test_int8_cache_entries_are_keyed_by_precision_and_calibration(cached, cli, tmp_path):
    weights, cache, _ = cached
    again = cli(*INT8_RUN, "-w", weights, tmp=cache)
    assert again.exit_code == 0 and "quantizing" not in again.stderr  # a cache hit
    listed = [e for e in cli("cache", "list", "-f", "json", tmp=cache).json()]
    (int8,) = [e for e in listed if e["precision"] == "int8"]
    assert int8["arch"] == ARCH.name
    assert "int8" in cli("cache", "list", tmp=cache).stdout
    shutil.copytree(SAMPLES, tmp_path / "photos")
    edited = tmp_path / "photos" / "cat.jpg"
    edited.write_bytes(edited.read_bytes() + b"\0")  # same name, other content
    sources = [quantize.CalibrationSource.parse(s) for s in (None, str(tmp_path / "photos"))]
    store = ModelCache(cache)
    identity = RegistryNetwork(ARCH, Weights("file", weights)).identity(store)
    keys = [store.key(ARCH, identity, "litert", "int8", s.fingerprint()) for s in sources]
    keys.append(store.key(ARCH, identity, "litert"))
    assert len({store.model_path(key, ".tflite") for key in keys}) == 3
    assert store.lookup(keys[0], ".tflite") == Path(int8["path"])
    copy = tmp_path / "cache"
    shutil.copytree(cache, copy)
    assert cli("cache", "clear", tmp=copy).exit_code == 0
    assert ModelCache(copy).entries() == []


def test_int8_on_keras_is_a_usage_error_that_says_why(cli):
    run = cli(*INT8_RUN, "-w", "none", "-e", "keras")
    assert run.exit_code == 2 and run.stdout == ""
    assert run.stderr.splitlines() == [
        "cnn: error: --precision int8 runs on the compiled engines: Keras runs float graphs, and "
        "an int8 model is a quantized LiteRT model (use --engine auto, litert or openvino)"
    ]
    for args in (("--calibrate", SAMPLES), ("--precision", "int8", "--calibrate", "nothing*.jpg")):
        run = cli("classify", SAMPLE_PHOTOS[0], "-a", ARCH.name, "-w", "none", *args)
        assert run.exit_code == 2 and "--calibrate" in run.stderr.splitlines()[-1]


def test_bench_times_fp32_and_int8_side_by_side(cached, cli):
    weights, cache, _ = cached
    args = ("bench", "-a", ARCH.name, "-w", weights, "-e", "litert", "--repeats", "1")
    run = cli(*args, "-b", "2", "--precision", "fp32,int8", "-f", "json", tmp=cache)
    assert run.exit_code == 0, run.stderr
    rows = run.json()["results"]
    assert [(r["engine"], r["precision"]) for r in rows] == [("litert", "fp32"), ("litert", "int8")]
    fp32, int8 = rows
    assert fp32["top1_agreement"] is None
    assert 2 * int8["model_bytes"] < fp32["model_bytes"]  # int8 weights: a quarter of the bytes
    assert int8["top1_agreement"] in (0.0, 1.0)  # one photo, timed twice per batch
    assert all(r["images_per_s"] > 0 and r["cold_process_s"] > 0 for r in rows)


@needs_shared
def test_evaluate_in_int8_reports_what_it_costs_on_labelled_photos(cached, cli, tmp_path):
    """`cnn evaluate --precision int8` on the shared photos in ImageNet class folders: the same
    images, the int8 model (from the cache), and a top-1 within one photo of float32's."""
    weights, cache, _ = cached
    expected = json.loads((PHOTOS / "expected.json").read_text())
    root, imagenet = tmp_path / "val", cnncli.labels.imagenet()
    for name, indices in expected.items():
        folder = root / imagenet[indices[0]].wnid
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).symlink_to(PHOTOS / name)
    args = ("evaluate", root, "-a", ARCH.name, "-w", weights, "-e", "litert", "-f", "json")
    docs = {p: cli(*args, "--precision", p, tmp=cache) for p in ("fp32", "int8")}
    assert all(run.exit_code == 0 for run in docs.values()), docs["int8"].stderr
    fp32, int8 = docs["fp32"].json(), docs["int8"].json()
    assert (fp32["precision"], int8["precision"]) == ("fp32", "int8")
    assert int8["model"] == fp32["model"] + "+int8:" + int8["model"].rsplit(":", 1)[1]
    assert "quantizing" not in docs["int8"].stderr  # the cached int8 model
    assert fp32["images"] == int8["images"] == len(expected)
    assert int8["top1"] >= fp32["top1"] - 1 / len(expected) - 1e-9


def test_default_calibration_photos_are_found_where_a_wheel_installs_them(tmp_path):
    """A wheel has no checkout beside the package: the sample images come from the
    environment's share/ folder instead, and being the same photos, give the same cache key."""
    installed = tmp_path / "share" / "cnncli" / "sample_images"
    installed.mkdir(parents=True)
    for photo in SAMPLE_PHOTOS:
        shutil.copyfile(photo, installed / photo.name)
    places = (tmp_path / "checkout" / "sample_images", installed)
    assert quantize.sample_images(places) == installed
    assert quantize.sample_images(places[:1]) == places[0]  # neither: the error names the first
    default = quantize.CalibrationSource.parse(None)
    copied = quantize.CalibrationSource.parse(str(installed))
    assert copied.fingerprint() == default.fingerprint()
