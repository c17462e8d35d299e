"""Weights sources: files that fit, files that do not, and the offline ImageNet download."""

from __future__ import annotations

import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

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


def test_imagenet_download_offline_gives_one_clear_line(tmp_path):
    env = {
        **os.environ,
        "KERAS_HOME": str(tmp_path / "keras"),
        # An unroutable proxy makes the download fail the same way with or without network.
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "cnncli", "classify", str(CAT), "-a", "mobilenet_0.25"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert "mobilenet_2_5_224_tf.h5" in line  # which file
    assert "https://storage.googleapis.com/" in line  # from where
    assert str(tmp_path / "keras" / "models") in line  # where to put it
    assert "--weights PATH" in line
    assert proc.stdout == ""
