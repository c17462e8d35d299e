"""The registry: one record per architecture, the single source of truth every command reads.

A record says how to build the model (Keras constructor and arguments), what it eats (input size,
preprocessing mode), what it is (family, year) and what it is known to achieve (the Keras
documentation's ImageNet top-1/top-5 and parameter count). A new architecture is one
entry in `ARCHS`. Nothing here imports TensorFlow, so listing and lookup are instant.

Reference figures: Keras's applications table (keras.io/api/applications) for the base models;
for width variants that table does not list, the original papers (MobileNet v1 Table 6, MobileNetV2
Table 2 / TF-Slim checkpoints, MobileNetV3 Table 3) and `None` where no figure is published.
Parameter counts are exact (they equal the built models'; the heavy test sweep checks every one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from cnncli.errors import UsageError, did_you_mean

#: How pixels in 0-255 RGB become the network's input (Keras's `imagenet_utils` modes).
#: "caffe": RGB->BGR minus the ImageNet channel means; "tf": scale to [-1, 1]; "torch": scale to
#: [0, 1] then standardise per channel; "none": the model rescales inside itself.
Preprocessing = Literal["caffe", "tf", "torch", "none"]

#: `feature_layer` value for models whose last feature map has no stable Keras name (Keras
#: auto-numbers it: MobileNetV3's and NASNet's last activation, the unnamed `+` that closes
#: ConvNeXt's last block): Grad-CAM then uses the operation that feeds the head's global pooling.
POOL_INPUT = "<global pooling input>"

#: Constructors outside keras.applications, as "module:function".
LOCAL = "cnncli.basic_resnet:"


@dataclass(frozen=True)
class Arch:
    """Everything cnncli knows about one architecture."""

    name: str
    constructor: str  # keras.applications attribute ("ResNet50") or "module:function"
    module: str  # keras.applications submodule whose preprocess_input matches `preprocessing`
    preprocessing: Preprocessing
    input_size: int
    family: str
    year: int
    params: int  # parameters of the full classifier, exactly as the built model counts them
    top1: float | None  # reference ImageNet validation accuracy, in percent
    top5: float | None
    feature_layer: str  # last convolutional feature map, for Grad-CAM
    kwargs: tuple[tuple[str, Any], ...] = ()
    aliases: tuple[str, ...] = field(default=())

    @property
    def pretrained(self) -> bool:
        """Whether Keras publishes ImageNet weights for this architecture."""
        return not self.constructor.startswith(LOCAL)

    @property
    def weights_mb(self) -> float:
        """Size of the float32 weights in MiB (what Keras's table lists as the model's size)."""
        return self.params * 4 / 2**20

    @property
    def constructor_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for the constructor, besides weights and input shape."""
        return dict(self.kwargs)


def _entries() -> list[Arch]:
    """All records. Columns: name, constructor, module, mode, size, family, year, params, top-1,
    top-5, feature layer, then constructor arguments and aliases."""
    a = Arch
    pool = POOL_INPUT
    # fmt: off
    return [
        a("vgg16", "VGG16", "vgg16", "caffe", 224, "VGG", 2014,
          138_357_544, 71.3, 90.1, "block5_conv3"),
        a("vgg19", "VGG19", "vgg19", "caffe", 224, "VGG", 2014,
          143_667_240, 71.3, 90.0, "block5_conv4"),
        a("resnet18", LOCAL + "ResNet18", "resnet", "caffe", 224, "ResNet", 2015,
          11_699_112, None, None, "conv5_block2_out"),
        a("resnet34", LOCAL + "ResNet34", "resnet", "caffe", 224, "ResNet", 2015,
          21_814_696, None, None, "conv5_block3_out"),
        a("resnet50", "ResNet50", "resnet50", "caffe", 224, "ResNet", 2015,
          25_636_712, 74.9, 92.1, "conv5_block3_out"),
        a("resnet101", "ResNet101", "resnet", "caffe", 224, "ResNet", 2015,
          44_707_176, 76.4, 92.8, "conv5_block3_out"),
        a("resnet152", "ResNet152", "resnet", "caffe", 224, "ResNet", 2015,
          60_419_944, 76.6, 93.1, "conv5_block3_out"),
        a("resnet50_v2", "ResNet50V2", "resnet_v2", "tf", 224, "ResNetV2", 2016,
          25_613_800, 76.0, 93.0, "post_relu"),
        a("resnet101_v2", "ResNet101V2", "resnet_v2", "tf", 224, "ResNetV2", 2016,
          44_675_560, 77.2, 93.8, "post_relu"),
        a("resnet152_v2", "ResNet152V2", "resnet_v2", "tf", 224, "ResNetV2", 2016,
          60_380_648, 78.0, 94.2, "post_relu"),
        a("inception_v3", "InceptionV3", "inception_v3", "tf", 299, "Inception", 2015,
          23_851_784, 77.9, 93.7, "mixed10", aliases=("googlenet_v3",)),
        a("inception_resnet_v2", "InceptionResNetV2", "inception_resnet_v2", "tf", 299,
          "Inception", 2016, 55_873_736, 80.3, 95.3, "conv_7b_ac"),
        a("xception", "Xception", "xception", "tf", 299, "Inception", 2016,
          22_910_480, 79.0, 94.5, "block14_sepconv2_act"),
        a("mobilenet", "MobileNet", "mobilenet", "tf", 224, "MobileNet", 2017,
          4_253_864, 70.4, 89.5, "conv_pw_13_relu", aliases=("mobilenet_v1",)),
        a("mobilenet_0.75", "MobileNet", "mobilenet", "tf", 224, "MobileNet", 2017,
          2_601_976, 68.4, None, "conv_pw_13_relu", (("alpha", 0.75),)),
        a("mobilenet_0.5", "MobileNet", "mobilenet", "tf", 224, "MobileNet", 2017,
          1_342_536, 63.7, None, "conv_pw_13_relu", (("alpha", 0.5),)),
        a("mobilenet_0.25", "MobileNet", "mobilenet", "tf", 224, "MobileNet", 2017,
          475_544, 50.6, None, "conv_pw_13_relu", (("alpha", 0.25),)),
        a("mobilenet_v2", "MobileNetV2", "mobilenet_v2", "tf", 224, "MobileNetV2", 2018,
          3_538_984, 71.3, 90.1, "out_relu"),
        a("mobilenet_v2_0.35", "MobileNetV2", "mobilenet_v2", "tf", 224, "MobileNetV2", 2018,
          1_691_208, 60.3, 82.9, "out_relu", (("alpha", 0.35),)),
        a("mobilenet_v2_0.5", "MobileNetV2", "mobilenet_v2", "tf", 224, "MobileNetV2", 2018,
          1_987_224, 65.4, 86.4, "out_relu", (("alpha", 0.5),)),
        a("mobilenet_v2_0.75", "MobileNetV2", "mobilenet_v2", "tf", 224, "MobileNetV2", 2018,
          2_663_064, 69.8, 89.6, "out_relu", (("alpha", 0.75),)),
        a("mobilenet_v2_1.3", "MobileNetV2", "mobilenet_v2", "tf", 224, "MobileNetV2", 2018,
          5_431_048, 74.4, 92.1, "out_relu", (("alpha", 1.3),)),
        a("mobilenet_v2_1.4", "MobileNetV2", "mobilenet_v2", "tf", 224, "MobileNetV2", 2018,
          6_156_712, 75.0, 92.5, "out_relu", (("alpha", 1.4),)),
        a("mobilenet_v3_small", "MobileNetV3Small", "mobilenet_v3", "none", 224, "MobileNetV3",
          2019, 2_554_968, 68.1, None, pool),
        a("mobilenet_v3_large", "MobileNetV3Large", "mobilenet_v3", "none", 224, "MobileNetV3",
          2019, 5_507_432, 75.6, None, pool),
        a("mobilenet_v3_small_minimalistic", "MobileNetV3Small", "mobilenet_v3", "none", 224,
          "MobileNetV3", 2019, 2_056_848, 61.9, None, pool, (("minimalistic", True),)),
        a("mobilenet_v3_large_minimalistic", "MobileNetV3Large", "mobilenet_v3", "none", 224,
          "MobileNetV3", 2019, 3_948_688, 72.3, None, pool, (("minimalistic", True),)),
        a("densenet121", "DenseNet121", "densenet", "torch", 224, "DenseNet", 2016,
          8_062_504, 75.0, 92.3, "relu"),
        a("densenet169", "DenseNet169", "densenet", "torch", 224, "DenseNet", 2016,
          14_307_880, 76.2, 93.2, "relu"),
        a("densenet201", "DenseNet201", "densenet", "torch", 224, "DenseNet", 2016,
          20_242_984, 77.3, 93.6, "relu"),
        a("nasnet_mobile", "NASNetMobile", "nasnet", "tf", 224, "NASNet", 2017,
          5_326_716, 74.4, 91.9, pool),
        a("nasnet_large", "NASNetLarge", "nasnet", "tf", 331, "NASNet", 2017,
          88_949_818, 82.5, 96.0, pool),
        *_efficientnets(),
        *_convnexts(),
    ]
    # fmt: on


def _efficientnets() -> list[Arch]:
    """EfficientNet B0-B7 and EfficientNetV2: compound-scaled, rescaling inside the model."""
    v1 = [  # suffix, input size, params, top-1, top-5
        ("b0", 224, 5_330_571, 77.1, 93.3),
        ("b1", 240, 7_856_239, 79.1, 94.4),
        ("b2", 260, 9_177_569, 80.1, 94.9),
        ("b3", 300, 12_320_535, 81.6, 95.7),
        ("b4", 380, 19_466_823, 82.9, 96.4),
        ("b5", 456, 30_562_527, 83.6, 96.7),
        ("b6", 528, 43_265_143, 84.0, 96.8),
        ("b7", 600, 66_658_687, 84.3, 97.0),
    ]
    v2 = [
        ("b0", 224, 7_200_312, 78.7, 94.3),
        ("b1", 240, 8_212_124, 79.8, 95.0),
        ("b2", 260, 10_178_374, 80.5, 95.1),
        ("b3", 300, 14_467_622, 82.0, 95.8),
        ("s", 384, 21_612_360, 83.9, 96.7),
        ("m", 480, 54_431_388, 85.3, 97.4),
        ("l", 480, 119_027_848, 85.7, 97.5),
    ]
    # fmt: off
    return [
        *(Arch(f"efficientnet_{s}", f"EfficientNet{s.upper()}", "efficientnet", "none", size,
               "EfficientNet", 2019, params, top1, top5, "top_activation")
          for s, size, params, top1, top5 in v1),
        *(Arch(f"efficientnet_v2_{s}", f"EfficientNetV2{s.upper()}", "efficientnet_v2", "none",
               size, "EfficientNetV2", 2021, params, top1, top5, "top_activation")
          for s, size, params, top1, top5 in v2),
    ]
    # fmt: on


def _convnexts() -> list[Arch]:
    """ConvNeXt (Liu et al. 2022): a ResNet modernised towards transformers."""
    sizes = [  # suffix, Keras class suffix, params, top-1
        ("tiny", "Tiny", 28_589_128, 81.3),
        ("small", "Small", 50_223_688, 82.3),
        ("base", "Base", 88_591_464, 85.3),
        ("large", "Large", 197_767_336, 86.3),
        ("xlarge", "XLarge", 350_196_968, 86.7),
    ]
    # `*_stage_3_block_2_identity` is the residual branch, not the sum: hence POOL_INPUT
    # fmt: off
    return [
        Arch(f"convnext_{s}", f"ConvNeXt{cls}", "convnext", "none", 224, "ConvNeXt", 2022,
             params, top1, None, POOL_INPUT)
        for s, cls, params, top1 in sizes
    ]
    # fmt: on


ARCHS: dict[str, Arch] = {arch.name: arch for arch in _entries()}

#: The architectures `cnn compare` runs unless told otherwise: four generations of ImageNet CNNs,
#: each with its own input size and preprocessing.
COMPARED = ("vgg16", "inception_v3", "resnet50", "densenet121")


def normalize(name: str) -> str:
    """Fold spelling differences: `ResNet50`, `resnet-50` and `resnet_50` are one key."""
    return re.sub(r"[\s_\-.]", "", name.lower())


def _index() -> dict[str, Arch]:
    index: dict[str, Arch] = {}
    for arch in ARCHS.values():
        for key in (arch.name, *arch.aliases):
            index[normalize(key)] = arch
    for arch in ARCHS.values():  # Keras's own class names, where one names one record
        index.setdefault(normalize(arch.constructor.split(":")[-1]), arch)
    return index


_INDEX = _index()


def get(name: str) -> Arch:
    """The record for `name`, spelled any common way; `UsageError` with suggestions otherwise."""
    arch = _INDEX.get(normalize(name))
    if arch is not None:
        return arch
    hint = did_you_mean(normalize(name), {key: arch.name for key, arch in _INDEX.items()}, 0.5)
    raise UsageError(f"unknown architecture '{name}' (`cnn models` lists them all){hint}")
