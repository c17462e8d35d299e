"""Every registry record against Keras itself: constructor, arguments, preprocessing, lookup."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from cnncli import registry
from cnncli.errors import UsageError
from cnncli.loader import Weights, build, constructor
from cnncli.preprocess import preprocess
from cnncli.tf_runtime import import_keras

ARCHS = list(registry.ARCHS.values())

# Input sizes as the Keras documentation states them ("224x224 for all models except ..."),
# an independent source for the registry's column.
DOCUMENTED_SIZES = {
    "inception_v3": 299,
    "inception_resnet_v2": 299,
    "xception": 299,
    "nasnet_large": 331,
    "efficientnet_b1": 240,
    "efficientnet_b2": 260,
    "efficientnet_b3": 300,
    "efficientnet_b4": 380,
    "efficientnet_b5": 456,
    "efficientnet_b6": 528,
    "efficientnet_b7": 600,
    "efficientnet_v2_b1": 240,
    "efficientnet_v2_b2": 260,
    "efficientnet_v2_b3": 300,
    "efficientnet_v2_s": 384,
    "efficientnet_v2_m": 480,
    "efficientnet_v2_l": 480,
}


def test_the_issue_lists_every_architecture():
    expected = {
        "vgg16",
        "vgg19",
        "resnet18",
        "resnet34",
        "resnet50",
        "resnet101",
        "resnet152",
        "resnet50_v2",
        "resnet101_v2",
        "resnet152_v2",
        "inception_v3",
        "inception_resnet_v2",
        "xception",
        "mobilenet",
        "mobilenet_0.75",
        "mobilenet_0.5",
        "mobilenet_0.25",
        "mobilenet_v2",
        "mobilenet_v2_0.35",
        "mobilenet_v2_0.5",
        "mobilenet_v2_0.75",
        "mobilenet_v2_1.3",
        "mobilenet_v2_1.4",
        "mobilenet_v3_small",
        "mobilenet_v3_large",
        "mobilenet_v3_small_minimalistic",
        "mobilenet_v3_large_minimalistic",
        "densenet121",
        "densenet169",
        "densenet201",
        "nasnet_mobile",
        "nasnet_large",
        *(f"efficientnet_b{i}" for i in range(8)),
        *(f"efficientnet_v2_{s}" for s in ("b0", "b1", "b2", "b3", "s", "m", "l")),
        *(f"convnext_{s}" for s in ("tiny", "small", "base", "large", "xlarge")),
    }
    assert set(registry.ARCHS) == expected


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: a.name)
def test_input_size_is_the_documented_one(arch):
    assert arch.input_size == DOCUMENTED_SIZES.get(arch.name, 224)


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: a.name)
def test_preprocessing_mode_equals_the_keras_module(arch):
    keras = import_keras()
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 5, 5, 3)).astype(np.float32)
    theirs = getattr(keras.applications, arch.module).preprocess_input(pixels.copy())
    np.testing.assert_allclose(
        preprocess(pixels, arch.preprocessing), np.asarray(theirs), rtol=1e-6, atol=1e-5
    )


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: a.name)
def test_constructor_accepts_the_record_arguments(arch):
    parameters = inspect.signature(constructor(arch)).parameters
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    for key in (*arch.kwargs, "weights", "input_shape"):
        assert accepts_any or key in parameters, f"{arch.constructor} takes no {key}"


def test_modes_cover_all_four_kinds():
    assert {a.preprocessing for a in ARCHS} == {"caffe", "tf", "torch", "none"}


def test_width_variants_pass_their_multiplier():
    assert registry.get("mobilenet_0.25").kwargs == {"alpha": 0.25}
    assert registry.get("mobilenet_v2_1.4").kwargs == {"alpha": 1.4}
    assert registry.get("mobilenet_v3_small_minimalistic").kwargs == {"minimalistic": True}


@pytest.mark.parametrize(
    "spelling, name",
    [
        ("ResNet50", "resnet50"),
        ("resnet-50", "resnet50"),
        ("InceptionV3", "inception_v3"),
        ("MobileNetV2", "mobilenet_v2"),
        ("mobilenet_v2_0.35", "mobilenet_v2_0.35"),
        ("EfficientNetV2B0", "efficientnet_v2_b0"),
        ("ConvNeXt-Tiny", "convnext_tiny"),
        ("mobilenet_v1", "mobilenet"),
        ("RESNET18", "resnet18"),
    ],
)
def test_names_are_looked_up_forgivingly(spelling, name):
    assert registry.get(spelling).name == name


def test_unknown_name_suggests_close_ones():
    with pytest.raises(UsageError, match=r"did you mean .*resnet50") as info:
        registry.get("resnet5O")
    assert info.value.exit_code == 2


def test_only_the_basic_resnets_lack_imagenet_weights():
    assert {a.name for a in ARCHS if not a.pretrained} == {"resnet18", "resnet34"}


@pytest.mark.heavy
@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: a.name)
def test_every_record_builds_at_its_size_with_its_parameter_count(arch):
    keras = import_keras()
    model = build(arch, Weights("none"))
    assert tuple(model.input_shape[1:]) == (arch.input_size, arch.input_size, 3)
    assert model.output_shape[-1] == 1000
    assert model.count_params() == arch.params
    if arch.pretrained:  # Keras's own default input size, with no shape given
        default = constructor(arch)(weights=None, **arch.kwargs)
        assert tuple(default.input_shape[1:3]) in ((arch.input_size,) * 2, (None, None))
    keras.backend.clear_session()
