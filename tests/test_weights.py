"""Weights sources: files that fit, files that do not, and the offline ImageNet download."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from cnncli import registry
from tests.conftest import MOBILENET_WEIGHTS, ROOT, SAMPLES, needs_shared, seeded_model

CAT = SAMPLES / "cat.jpg"


@pytest.fixture(scope="module")
def legacy_and_v3_files(tmp_path_factory):
    """The same seeded MobileNet-0.25 saved as Keras 3 `.weights.h5` and as legacy `.h5`."""
    model = seeded_model("mobilenet_0.25", 7)  # imports TensorFlow quietly first
    from keras.src.legacy.saving import legacy_h5_format

    folder = tmp_path_factory.mktemp("weights")
    v3, legacy = folder / "seeded.weights.h5", folder / "seeded_legacy.h5"
    model.save_weights(v3)
    with h5py.File(legacy, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return v3, legacy


def scores(cli, *args) -> np.ndarray:
    run = cli("classify", CAT, "-a", "mobilenet_0.25", "-k", "1000", "-f", "json", *args)
    assert run.exit_code == 0, run.stderr
    predictions = sorted(run.json()["results"][0]["predictions"], key=lambda p: p["index"])
    return np.array([p["score"] for p in predictions])


def test_legacy_h5_and_keras3_files_give_the_same_scores(cli, legacy_and_v3_files):
    v3, legacy = legacy_and_v3_files
    np.testing.assert_allclose(scores(cli, "-w", v3), scores(cli, "-w", legacy), atol=1e-7)
    assert not np.allclose(scores(cli, "-w", v3), scores(cli, "-w", "none"), atol=1e-4)


@needs_shared
def test_weights_of_another_arch_are_refused_naming_both(cli):
    run = cli("classify", CAT, "-a", "mobilenet_0.5", "-w", MOBILENET_WEIGHTS)
    assert run.exit_code == 1
    line = run.stderr.strip()
    assert line.count("\n") == 0
    assert str(MOBILENET_WEIGHTS) in line and "does not fit mobilenet_0.5" in line


@pytest.fixture(scope="module")
def other_files(tmp_path_factory):
    """Weights that load into no MobileNet-0.25: another architecture's, and a MobileNet-0.25
    trained for 10 classes (legacy `.h5`, as older Keras saved them)."""
    from keras.src.legacy.saving import legacy_h5_format

    from cnncli.loader import Weights, build
    from cnncli.tf_runtime import import_keras

    folder = tmp_path_factory.mktemp("other")
    v2, ten = folder / "mobilenet_v2.weights.h5", folder / "mobilenet_10_classes.h5"
    build(registry.get("mobilenet_v2_0.35"), Weights("none")).save_weights(v2)
    small = import_keras().applications.MobileNet(weights=None, alpha=0.25, classes=10)
    with h5py.File(ten, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, small)
    return v2, ten


def test_weights_of_another_model_say_what_the_file_holds(cli, other_files):
    v2, ten = other_files
    holdings = [
        (v2, "105 layers with weights (1,691,208 values),"),
        (ten, "55 layers with weights (221,114 values) for 10 classes,"),
    ]
    for path, holds in holdings:
        run = cli("classify", CAT, "-a", "mobilenet_0.25", "-w", path)
        assert run.exit_code == 1
        [line] = run.stderr.splitlines()
        assert f"does not fit mobilenet_0.25: it holds {holds}" in line, line
        assert "mobilenet_0.25 has 55 layers with weights (475,544 values) for 1000 classes" in line
        assert "Keras version" not in line


def test_a_file_that_is_not_hdf5_is_refused(cli, tmp_path):
    junk = tmp_path / "junk.weights.h5"
    junk.write_text("hello")
    run = cli("classify", CAT, "-a", "mobilenet_0.25", "-w", junk)
    assert run.exit_code == 1
    assert str(junk) in run.stderr and "Traceback" not in run.stderr


@pytest.mark.parametrize("name", ["missing.weights.h5", "weights.bin"])
def test_missing_or_misnamed_weights_file_is_a_usage_error(cli, tmp_path, name):
    run = cli("classify", CAT, "-a", "mobilenet_0.25", "-w", tmp_path / name)
    assert run.exit_code == 2
    assert name in run.stderr


def test_basic_resnets_say_they_have_no_imagenet_weights(cli):
    run = cli("classify", CAT, "-a", "resnet34", "-w", "imagenet")
    assert run.exit_code == 1
    assert "resnet34 has no published ImageNet weights" in run.stderr
    assert "--weights none" in run.stderr


def offline(keras_home: Path, arch: str) -> subprocess.CompletedProcess:
    """`cnn classify CAT -a ARCH` (ImageNet weights) with Keras's cache in `keras_home`."""
    env = {
        **os.environ,
        "KERAS_HOME": str(keras_home),
        # An unroutable proxy makes the download fail the same way with or without network.
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
    }
    command = [sys.executable, "-m", "cnncli", "classify", str(CAT), "-a", arch, "-e", "keras"]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)


def test_imagenet_download_offline_gives_one_clear_line(tmp_path):
    proc = offline(tmp_path / "keras", "mobilenet_0.25")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert "mobilenet_2_5_224_tf.h5" in line  # which file
    assert "https://storage.googleapis.com/" in line  # from where
    assert str(tmp_path / "keras" / "models") in line  # where to put it
    assert "--weights PATH" in line
    assert proc.stdout == ""


@pytest.mark.parametrize(
    ("arch", "name", "removed"),
    [
        ("mobilenet_0.25", "mobilenet_2_5_224_tf.h5", False),  # Keras has no checksum: it reads it
        ("resnet50", "resnet50_weights_tf_dim_ordering_tf_kernels.h5", True),  # checksum fails
    ],
)
def test_a_corrupt_copy_in_keras_cache_is_named_as_corrupt(tmp_path, arch, name, removed):
    corrupt = tmp_path / "models" / name
    corrupt.parent.mkdir()
    with h5py.File(corrupt, "w") as f:
        f["kernel"] = np.zeros(100_000, np.float32)
    corrupt.write_bytes(corrupt.read_bytes()[:100_000])  # truncated, as by a broken download
    proc = offline(tmp_path, arch)
    assert proc.returncode == 1
    [line] = proc.stderr.splitlines()
    assert f"ImageNet weights file {corrupt} " in line and "corrupt" in line, line
    assert ("Keras removed it" in line) == removed and corrupt.exists() != removed
    if not removed:
        assert "delete it" in line


def test_random_weights_warn_that_labels_mean_nothing(cli):
    two = "mobilenet_0.25,mobilenet_0.5"
    runs = [
        cli("classify", CAT, "-a", "mobilenet_0.25", "-w", "none", "-e", "keras", "-f", "json"),
        cli("explain", CAT, "-a", "mobilenet_0.25", "-w", "none", "-f", "json"),
        cli("compare", CAT, "-a", two, "-w", "none", "-e", "keras", "-f", "json"),
    ]
    for run in runs:
        assert run.exit_code == 0, run.stderr
        [line] = run.stderr.splitlines()
        assert line.startswith("cnn: warning: mobilenet_0.25") and "meaningless" in line
    assert "mobilenet_0.5" in runs[2].stderr
