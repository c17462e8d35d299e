"""The trained-model folder: written whole, read back checked, refused when it is not one."""

from __future__ import annotations

import json

import pytest

from cnncli import bundle
from cnncli.errors import CnnError, UsageError
from cnncli.tf_runtime import import_keras

METADATA = {
    "arch": "mobilenet_0.25",
    "input_size": 32,
    "preprocessing": "tf",
    "resize": "stretch",
    "classes": ["finch", "sparrow", "tit"],
    "params": 99,
}


def tiny_model(lambda_layer: bool = False):
    """A three-class softmax classifier small enough to save in milliseconds."""
    keras = import_keras()
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    if lambda_layer:
        x = keras.layers.Lambda(lambda t: t * 2)(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))


def test_written_bundle_loads_with_its_record_and_classes(tmp_path):
    folder = tmp_path / "birds"
    bundle.write(folder, tiny_model(), METADATA)
    loaded = bundle.load(folder)
    assert loaded.classes == ("finch", "sparrow", "tit") and loaded.resize == "stretch"
    record = loaded.record
    assert (record.name, record.input_size, record.preprocessing) == ("birds", 32, "tf")
    assert (record.params, record.top1, record.pretrained) == (99, None, False)
    assert loaded.model().output_shape == (None, 3)
    assert sorted(p.name for p in folder.iterdir()) == ["cnn-model.json", "model.keras"]


def test_digest_follows_the_content(tmp_path):
    bundle.write(tmp_path / "a", tiny_model(), METADATA)
    before = bundle.load(tmp_path / "a").digest
    bundle.write(tmp_path / "a", tiny_model(), {**METADATA, "classes": ["x", "y", "z"]})
    assert bundle.load(tmp_path / "a").digest != before


def test_a_model_holding_code_is_refused_not_run(tmp_path):
    bundle.write(tmp_path / "evil", tiny_model(lambda_layer=True), METADATA)
    with pytest.raises(CnnError, match="holds code"):
        bundle.load(tmp_path / "evil").model()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda folder: folder.rmdir(), "not a folder"),
        (lambda folder: None, "not a trained model"),
        (lambda folder: (folder / "cnn-model.json").write_text("{}"), "not a cnn model"),
        (
            lambda folder: (folder / "cnn-model.json").write_text(
                json.dumps({"format": "cnncli.bundle", "version": 99})
            ),
            "newer than this cnn reads",
        ),
        (
            lambda folder: (folder / "cnn-model.json").write_text(
                json.dumps({"format": "cnncli.bundle", "version": 1, "arch": "vgg16"})
            ),
            "incomplete bundle",
        ),
    ],
    ids=["missing", "no metadata", "foreign", "newer", "incomplete"],
)
def test_what_is_not_a_bundle_is_one_usage_error(tmp_path, change, message):
    folder = tmp_path / "model"
    folder.mkdir()
    change(folder)
    with pytest.raises(UsageError, match=message):
        bundle.load(folder)
