"""`cnn classify --resize stretch` equals the plain Keras pipeline, for every preprocessing mode.

The plain pipeline is what the Keras documentation shows: Pillow resize, the module's own
`preprocess_input`, `model.predict`. Each test writes a seeded weights file so the comparison
runs offline with non-trivial weights.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cnncli import registry
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


def plain_keras_scores(model, arch: registry.Arch) -> np.ndarray:
    keras = import_keras()
    size = arch.input_size
    img = Image.open(PHOTO).convert("RGB").resize((size, size), Image.BILINEAR)
    x = np.expand_dims(keras.utils.img_to_array(img), 0)
    x = getattr(keras.applications, arch.module).preprocess_input(x)
    return model.predict(x, verbose=0)[0]


@pytest.mark.parametrize("mode, name", sorted(BY_MODE.items()))
def test_stretch_equals_plain_keras_pipeline(cli, tmp_path, mode, name):
    arch = registry.get(name)
    assert arch.preprocessing == mode
    model = seeded_model(name, 1234)
    weights = tmp_path / f"{name}.weights.h5"
    model.save_weights(weights)
    expected = plain_keras_scores(model, arch)

    run = cli(
        "classify",
        PHOTO,
        "-a",
        name,
        "-w",
        weights,
        "--resize",
        "stretch",
        "-k",
        "1000",
        "-f",
        "json",
    )
    assert run.exit_code == 0, run.stderr
    predictions = run.json()["results"][0]["predictions"]
    ours = np.zeros(1000)
    for p in predictions:
        ours[p["index"]] = p["score"]
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-6)
    assert predictions[0]["index"] == int(np.argmax(expected))
    assert expected.max() > 2 / 1000  # the seeded weights give a real ranking, not a flat one
