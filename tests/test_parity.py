"""`cnn classify --resize stretch` equals the plain Keras pipeline, per mode and per engine.

The plain pipeline is what the Keras documentation shows: Pillow resize, the module's own
`preprocess_input`, `model.predict`. Each architecture gets a seeded weights file, so the
comparison runs offline with non-trivial weights; the compiled engine must match it too.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnncli import litert, registry
from cnncli.tf_runtime import import_keras
from tests.conftest import SAMPLES, seeded_model

PHOTO = SAMPLES / "cat.jpg"  # no EXIF rotation, so the plain pipeline sees the same pixels

# One architecture per preprocessing mode; inception_v3 also checks the 299 px input.
BY_MODE = {
    "caffe": "resnet50",
    "tf": "inception_v3",
    "torch": "densenet121",
    "none": "efficientnet_b0",
}
ENGINES = [
    "keras",
    pytest.param(
        "litert",
        marks=pytest.mark.skipif(not litert.available(), reason="ai-edge-litert is not installed"),
    ),
]


def plain_keras_scores(model, arch: registry.Arch) -> np.ndarray:
    keras = import_keras()
    size = arch.input_size
    img = Image.open(PHOTO).convert("RGB").resize((size, size), Image.BILINEAR)
    x = np.expand_dims(keras.utils.img_to_array(img), 0)
    x = getattr(keras.applications, arch.module).preprocess_input(x)
    return model.predict(x, verbose=0)[0]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """name -> (weights file, plain-pipeline scores), built once per module."""
    folder = tmp_path_factory.mktemp("parity")

    @cache
    def make(name: str) -> tuple[Path, np.ndarray]:
        model = seeded_model(name, 1234)
        weights = folder / f"{name}.weights.h5"
        model.save_weights(weights)
        return weights, plain_keras_scores(model, registry.get(name))

    return make


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("mode, name", sorted(BY_MODE.items()))
def test_stretch_equals_plain_keras_pipeline(cli, seeded, mode, name, engine):
    assert registry.get(name).preprocessing == mode
    weights, expected = seeded(name)
    args = ["classify", PHOTO, "-a", name, "-w", weights, "--resize", "stretch", "-e", engine]
    run = cli(*args, "-k", "1000", "-f", "json")
    assert run.exit_code == 0, run.stderr
    assert run.json()["engine"] == engine
    predictions = run.json()["results"][0]["predictions"]
    ours = np.zeros(1000)
    for p in predictions:
        ours[p["index"]] = p["score"]
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-6)
    ranked = min(5, int((expected > 1e-4).sum()))  # below that, ties make the order arbitrary
    assert [p["index"] for p in predictions[:ranked]] == list(np.argsort(-expected)[:ranked])
    assert expected.max() > 2 / 1000  # the seeded weights give a real ranking, not a flat one
