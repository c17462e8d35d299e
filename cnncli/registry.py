"""The registry: one record per architecture, the single source of truth every command reads.

A record says how to build the model (Keras constructor and arguments), what it eats (input size,
preprocessing mode), what it is (family, year) and what it is known to achieve (the Keras
documentation's ImageNet top-1/top-5 and parameter count), every field by keyword. A new
architecture is one record in `_records()`. Nothing here imports TensorFlow, so listing and lookup
are instant.

Reference figures: Keras's applications table (keras.io/api/applications) for the base models;
for width variants that table does not list, the original papers (MobileNet v1 Table 6, MobileNetV2
Table 2 / TF-Slim checkpoints, MobileNetV3 Table 3) and `None` where no figure is published.
Parameter counts are exact (they equal the built models'; the heavy test sweep checks every one).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
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


@dataclass(frozen=True, kw_only=True)
class Arch:
    """Everything cnncli knows about one architecture, by keyword (timm's pretrained configs are
    the model): a swapped top-1 and top-5 cannot pass unnoticed as positional fields could."""

    name: str
    family: str
    year: int
    #: keras.applications attribute ("ResNet50"), or "module:function" for one of ours (`LOCAL`).
    constructor: str
    #: Keyword arguments for the constructor besides weights and input shape (MobileNet's alpha).
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    #: keras.applications submodule whose `preprocess_input` matches `preprocessing`.
    module: str
    preprocessing: Preprocessing
    input_size: int = 224
    #: Parameters of the full classifier, exactly as the built model counts them.
    params: int
    #: Reference ImageNet validation accuracy in percent, where one is published.
    top1: float | None = None
    top5: float | None = None
    #: The last convolutional feature map, for Grad-CAM.
    feature_layer: str = POOL_INPUT
    #: Where trained weights come from: "imagenet" (Keras's published download), or None where
    #: none are published (then `--weights none` or a file).
    weights: Literal["imagenet"] | None = "imagenet"
    aliases: tuple[str, ...] = ()

    def __hash__(self) -> int:  # a record is its name (`kwargs`, a dict, does not hash)
        return hash(self.name)

    @property
    def pretrained(self) -> bool:
        """Whether Keras publishes ImageNet weights for this architecture."""
        return self.weights == "imagenet"

    @property
    def weights_mb(self) -> float:
        """Size of the float32 weights in MiB (what Keras's table lists as the model's size)."""
        return self.params * 4 / 2**20


def _records() -> list[Arch]:
    """Every record, family by family; what a family shares is said once, in `_family`."""
    records: list[Arch] = []
    _vgg = _family("VGG", preprocessing="caffe", year=2014)
    records += [
        _vgg(
            "vgg16",
            constructor="VGG16",
            module="vgg16",
            params=138_357_544,
            top1=71.3,
            top5=90.1,
            feature_layer="block5_conv3",
        ),
        _vgg(
            "vgg19",
            constructor="VGG19",
            module="vgg19",
            params=143_667_240,
            top1=71.3,
            top5=90.0,
            feature_layer="block5_conv4",
        ),
    ]
    _resnet = _family("ResNet", preprocessing="caffe", year=2015)
    records += [
        _resnet(
            "resnet18",
            constructor=LOCAL + "ResNet18",
            weights=None,
            module="resnet",
            params=11_699_112,
            feature_layer="conv5_block2_out",
        ),
        _resnet(
            "resnet34",
            constructor=LOCAL + "ResNet34",
            weights=None,
            module="resnet",
            params=21_814_696,
            feature_layer="conv5_block3_out",
        ),
        _resnet(
            "resnet50",
            constructor="ResNet50",
            module="resnet50",
            params=25_636_712,
            top1=74.9,
            top5=92.1,
            feature_layer="conv5_block3_out",
        ),
        _resnet(
            "resnet101",
            constructor="ResNet101",
            module="resnet",
            params=44_707_176,
            top1=76.4,
            top5=92.8,
            feature_layer="conv5_block3_out",
        ),
        _resnet(
            "resnet152",
            constructor="ResNet152",
            module="resnet",
            params=60_419_944,
            top1=76.6,
            top5=93.1,
            feature_layer="conv5_block3_out",
        ),
    ]
    _resnetv2 = _family(
        "ResNetV2", module="resnet_v2", preprocessing="tf", year=2016, feature_layer="post_relu"
    )
    records += [
        _resnetv2("resnet50_v2", constructor="ResNet50V2", params=25_613_800, top1=76.0, top5=93.0),
        _resnetv2(
            "resnet101_v2", constructor="ResNet101V2", params=44_675_560, top1=77.2, top5=93.8
        ),
        _resnetv2(
            "resnet152_v2", constructor="ResNet152V2", params=60_380_648, top1=78.0, top5=94.2
        ),
    ]
    _inception = _family("Inception", preprocessing="tf", input_size=299)
    records += [
        _inception(
            "inception_v3",
            constructor="InceptionV3",
            module="inception_v3",
            year=2015,
            params=23_851_784,
            top1=77.9,
            top5=93.7,
            feature_layer="mixed10",
            aliases=("googlenet_v3",),
        ),
        _inception(
            "inception_resnet_v2",
            constructor="InceptionResNetV2",
            module="inception_resnet_v2",
            year=2016,
            params=55_873_736,
            top1=80.3,
            top5=95.3,
            feature_layer="conv_7b_ac",
        ),
        _inception(
            "xception",
            constructor="Xception",
            module="xception",
            year=2016,
            params=22_910_480,
            top1=79.0,
            top5=94.5,
            feature_layer="block14_sepconv2_act",
        ),
    ]
    _mobilenet = _family(
        "MobileNet",
        constructor="MobileNet",
        module="mobilenet",
        preprocessing="tf",
        year=2017,
        feature_layer="conv_pw_13_relu",
    )
    records += [
        _mobilenet("mobilenet", params=4_253_864, top1=70.4, top5=89.5, aliases=("mobilenet_v1",)),
        _mobilenet("mobilenet_0.75", params=2_601_976, top1=68.4, kwargs={"alpha": 0.75}),
        _mobilenet("mobilenet_0.5", params=1_342_536, top1=63.7, kwargs={"alpha": 0.5}),
        _mobilenet("mobilenet_0.25", params=475_544, top1=50.6, kwargs={"alpha": 0.25}),
    ]
    _mobilenetv2 = _family(
        "MobileNetV2",
        constructor="MobileNetV2",
        module="mobilenet_v2",
        preprocessing="tf",
        year=2018,
        feature_layer="out_relu",
    )
    records += [
        _mobilenetv2("mobilenet_v2", params=3_538_984, top1=71.3, top5=90.1),
        _mobilenetv2(
            "mobilenet_v2_0.35", params=1_691_208, top1=60.3, top5=82.9, kwargs={"alpha": 0.35}
        ),
        _mobilenetv2(
            "mobilenet_v2_0.5", params=1_987_224, top1=65.4, top5=86.4, kwargs={"alpha": 0.5}
        ),
        _mobilenetv2(
            "mobilenet_v2_0.75", params=2_663_064, top1=69.8, top5=89.6, kwargs={"alpha": 0.75}
        ),
        _mobilenetv2(
            "mobilenet_v2_1.3", params=5_431_048, top1=74.4, top5=92.1, kwargs={"alpha": 1.3}
        ),
        _mobilenetv2(
            "mobilenet_v2_1.4", params=6_156_712, top1=75.0, top5=92.5, kwargs={"alpha": 1.4}
        ),
    ]
    _mobilenetv3 = _family("MobileNetV3", module="mobilenet_v3", preprocessing="none", year=2019)
    records += [
        _mobilenetv3(
            "mobilenet_v3_small", constructor="MobileNetV3Small", params=2_554_968, top1=68.1
        ),
        _mobilenetv3(
            "mobilenet_v3_large", constructor="MobileNetV3Large", params=5_507_432, top1=75.6
        ),
        _mobilenetv3(
            "mobilenet_v3_small_minimalistic",
            constructor="MobileNetV3Small",
            params=2_056_848,
            top1=61.9,
            kwargs={"minimalistic": True},
        ),
        _mobilenetv3(
            "mobilenet_v3_large_minimalistic",
            constructor="MobileNetV3Large",
            params=3_948_688,
            top1=72.3,
            kwargs={"minimalistic": True},
        ),
    ]
    _densenet = _family(
        "DenseNet", module="densenet", preprocessing="torch", year=2016, feature_layer="relu"
    )
    records += [
        _densenet("densenet121", constructor="DenseNet121", params=8_062_504, top1=75.0, top5=92.3),
        _densenet(
            "densenet169", constructor="DenseNet169", params=14_307_880, top1=76.2, top5=93.2
        ),
        _densenet(
            "densenet201", constructor="DenseNet201", params=20_242_984, top1=77.3, top5=93.6
        ),
    ]
    _nasnet = _family("NASNet", module="nasnet", preprocessing="tf", year=2017)
    records += [
        _nasnet(
            "nasnet_mobile", constructor="NASNetMobile", params=5_326_716, top1=74.4, top5=91.9
        ),
        _nasnet(
            "nasnet_large",
            constructor="NASNetLarge",
            input_size=331,
            params=88_949_818,
            top1=82.5,
            top5=96.0,
        ),
    ]
    _efficientnet = _family(
        "EfficientNet",
        module="efficientnet",
        preprocessing="none",
        year=2019,
        feature_layer="top_activation",
    )
    records += [
        _efficientnet(
            "efficientnet_b0", constructor="EfficientNetB0", params=5_330_571, top1=77.1, top5=93.3
        ),
        _efficientnet(
            "efficientnet_b1",
            constructor="EfficientNetB1",
            input_size=240,
            params=7_856_239,
            top1=79.1,
            top5=94.4,
        ),
        _efficientnet(
            "efficientnet_b2",
            constructor="EfficientNetB2",
            input_size=260,
            params=9_177_569,
            top1=80.1,
            top5=94.9,
        ),
        _efficientnet(
            "efficientnet_b3",
            constructor="EfficientNetB3",
            input_size=300,
            params=12_320_535,
            top1=81.6,
            top5=95.7,
        ),
        _efficientnet(
            "efficientnet_b4",
            constructor="EfficientNetB4",
            input_size=380,
            params=19_466_823,
            top1=82.9,
            top5=96.4,
        ),
        _efficientnet(
            "efficientnet_b5",
            constructor="EfficientNetB5",
            input_size=456,
            params=30_562_527,
            top1=83.6,
            top5=96.7,
        ),
        _efficientnet(
            "efficientnet_b6",
            constructor="EfficientNetB6",
            input_size=528,
            params=43_265_143,
            top1=84.0,
            top5=96.8,
        ),
        _efficientnet(
            "efficientnet_b7",
            constructor="EfficientNetB7",
            input_size=600,
            params=66_658_687,
            top1=84.3,
            top5=97.0,
        ),
    ]
    _efficientnetv2 = _family(
        "EfficientNetV2",
        module="efficientnet_v2",
        preprocessing="none",
        year=2021,
        feature_layer="top_activation",
    )
    records += [
        _efficientnetv2(
            "efficientnet_v2_b0",
            constructor="EfficientNetV2B0",
            params=7_200_312,
            top1=78.7,
            top5=94.3,
        ),
        _efficientnetv2(
            "efficientnet_v2_b1",
            constructor="EfficientNetV2B1",
            input_size=240,
            params=8_212_124,
            top1=79.8,
            top5=95.0,
        ),
        _efficientnetv2(
            "efficientnet_v2_b2",
            constructor="EfficientNetV2B2",
            input_size=260,
            params=10_178_374,
            top1=80.5,
            top5=95.1,
        ),
        _efficientnetv2(
            "efficientnet_v2_b3",
            constructor="EfficientNetV2B3",
            input_size=300,
            params=14_467_622,
            top1=82.0,
            top5=95.8,
        ),
        _efficientnetv2(
            "efficientnet_v2_s",
            constructor="EfficientNetV2S",
            input_size=384,
            params=21_612_360,
            top1=83.9,
            top5=96.7,
        ),
        _efficientnetv2(
            "efficientnet_v2_m",
            constructor="EfficientNetV2M",
            input_size=480,
            params=54_431_388,
            top1=85.3,
            top5=97.4,
        ),
        _efficientnetv2(
            "efficientnet_v2_l",
            constructor="EfficientNetV2L",
            input_size=480,
            params=119_027_848,
            top1=85.7,
            top5=97.5,
        ),
    ]
    _convnext = _family("ConvNeXt", module="convnext", preprocessing="none", year=2022)
    records += [
        _convnext("convnext_tiny", constructor="ConvNeXtTiny", params=28_589_128, top1=81.3),
        _convnext("convnext_small", constructor="ConvNeXtSmall", params=50_223_688, top1=82.3),
        _convnext("convnext_base", constructor="ConvNeXtBase", params=88_591_464, top1=85.3),
        _convnext("convnext_large", constructor="ConvNeXtLarge", params=197_767_336, top1=86.3),
        _convnext("convnext_xlarge", constructor="ConvNeXtXLarge", params=350_196_968, top1=86.7),
    ]
    return records


def _family(family: str, **shared: Any) -> Callable[..., Arch]:
    """A maker of the family's records: `shared` fields, plus each record's own keywords."""
    return lambda name, **own: Arch(name=name, family=family, **shared, **own)


ARCHS: dict[str, Arch] = {arch.name: arch for arch in _records()}

#: The architectures `cnn compare` runs unless told otherwise: four generations of ImageNet CNNs,
#: each with its own input size and preprocessing.
COMPARED = ("vgg16", "inception_v3", "resnet50", "densenet121")

#: The architecture `classify`, `explain` and the Python API run unless told otherwise.
DEFAULT_ARCH = "resnet50"

#: The architectures `cnn bench` times unless told otherwise: a large and a small one.
BENCHED = ("resnet50", "mobilenet_v2")


@dataclass(frozen=True)
class Int8Fidelity:
    """How often an int8 model's top-1 equalled its float32 model's, as measured on one
    architecture (benchmarks/INT8.md: 17 photos and 8 mirrored, shifted, zoomed views of each)."""

    measured_on: str
    agreed: int
    views: int
    #: "seeded" (random weights with lively scores) or "imagenet" (real trained weights).
    weights: str

    @property
    def share(self) -> float:
        return self.agreed / self.views

    @property
    def warn(self) -> bool:
        """Below 90% agreement, int8 runs with a warning; nothing measured failed to convert."""
        return self.share < 0.9


#: int8 against float32, one architecture of every family, from benchmarks/INT8.md's table (a)-(c)
#: (reproduce: `python benchmarks/int8.py`). Only MobileNet-0.25 had real weights offline; the
#: others are seeded models, whose agreement shows how faithfully the quantized graph follows the
#: float one, not a trained model's accuracy. Every architecture converted, so none is refused.
INT8_MEASURED = {
    row.measured_on: row
    for row in (
        Int8Fidelity("vgg16", 104, 136, "seeded"),
        Int8Fidelity("resnet18", 126, 136, "seeded"),
        Int8Fidelity("resnet50", 123, 136, "seeded"),
        Int8Fidelity("resnet50_v2", 86, 136, "seeded"),
        Int8Fidelity("inception_v3", 136, 136, "seeded"),
        Int8Fidelity("xception", 122, 136, "seeded"),
        Int8Fidelity("mobilenet", 101, 136, "seeded"),
        Int8Fidelity("mobilenet_0.25", 106, 136, "imagenet"),
        Int8Fidelity("mobilenet_v2", 90, 136, "seeded"),
        Int8Fidelity("mobilenet_v3_small", 118, 136, "seeded"),
        Int8Fidelity("densenet121", 129, 136, "seeded"),
        Int8Fidelity("nasnet_mobile", 92, 136, "seeded"),
        Int8Fidelity("efficientnet_b0", 28, 136, "seeded"),
        Int8Fidelity("efficientnet_v2_b0", 70, 136, "seeded"),
        Int8Fidelity("convnext_tiny", 128, 136, "seeded"),
    )
}


def int8_fidelity(arch: Arch) -> Int8Fidelity:
    """The measurement that speaks for `arch`: its own, else the least faithful of its family's
    (a family shares its building blocks, which is what quantization acts on)."""
    if arch.name in INT8_MEASURED:
        return INT8_MEASURED[arch.name]
    family = [row for name, row in INT8_MEASURED.items() if ARCHS[name].family == arch.family]
    return min(family, key=lambda row: row.share)


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
