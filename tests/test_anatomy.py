"""`cnncli.anatomy`: the figures `cnn summary` prints must be the published ones.

Reference figures: Keras's applications table (parameter counts), He et al. 2015 Table 1 (MACs of
ResNet-18...152), Simonyan & Zisserman / torchvision (VGG16's 15.5 GMACs, ResNet-18/34's trainable
parameters). Each model is built once per module with random weights; only its `Anatomy` is kept.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest

from cnncli import anatomy, loader, registry
from cnncli.anatomy import Anatomy, analyse
from cnncli.output import human, human_bytes
from cnncli.tf_runtime import import_keras

Analysed = Callable[[str], Anatomy]


def _build_and_analyse(name: str) -> Anatomy:
    model = loader.build(registry.get(name), loader.Weights("none"))
    return analyse(model, name)


@pytest.fixture(scope="module")
def analysed() -> Analysed:
    """The anatomy of a registry architecture, each model built at most once in this module."""
    cache: dict[str, Anatomy] = {}

    def get(name: str) -> Anatomy:
        if name not in cache:
            cache[name] = _build_and_analyse(name)
        return cache[name]

    return get


# --- figures the published tables give --------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("vgg16", 138_357_544),
        ("resnet50", 25_636_712),
        ("inception_v3", 23_851_784),
        ("densenet121", 8_062_504),
    ],
)
def test_params_total_as_keras_documents(analysed: Analysed, name: str, params: int) -> None:
    a = analysed(name)
    assert a.params_total == params
    assert a.params_trainable + a.params_non_trainable == params
    assert sum(a.params_by_kind.values()) == params
    assert a.weights_mb == pytest.approx(params * 4 / 2**20)


@pytest.mark.parametrize(
    ("name", "gmacs"),
    [
        ("resnet18", 1.8),
        ("resnet34", 3.6),
        ("resnet50", 3.8),
        ("resnet101", 7.6),
        ("resnet152", 11.3),
    ],
)
def test_resnet_macs_match_he_et_al_table_1(analysed: Analysed, name: str, gmacs: float) -> None:
    assert analysed(name).macs == pytest.approx(gmacs * 1e9, rel=0.05)


@pytest.mark.parametrize(
    ("name", "trainable"), [("resnet18", 11_689_512), ("resnet34", 21_797_672)]
)
def test_basic_resnets_train_as_many_parameters_as_torchvision(
    analysed: Analysed, name: str, trainable: int
) -> None:
    # The rest are batch-norm moving means and variances, buffers (not parameters) in PyTorch.
    a = analysed(name)
    assert a.params_trainable == trainable
    assert a.params_total == registry.get(name).params


def test_vgg16_compute_weights_and_memory(analysed: Analysed) -> None:
    a = analysed("vgg16")
    assert a.macs == pytest.approx(15.5e9, rel=0.01)
    assert 0.88 <= a.params_by_kind["dense"] / a.params_total <= 0.90
    assert a.peak_layer.startswith("block1")
    assert a.peak_bytes == 224 * 224 * 64 * 4
    assert a.params_by_kind["norm"] == a.params_by_kind["depthwise"] == 0
    assert [s.stage for s in a.by_stage] == [
        "224x224",
        "112x112",
        "56x56",
        "28x28",
        "14x14",
        "7x7",
        anatomy.VECTOR,
    ]


@pytest.mark.parametrize(
    ("name", "depth"),
    [
        ("vgg16", 16),
        ("resnet18", 18),
        ("resnet34", 34),
        ("resnet50", 50),
        ("resnet101", 101),
        ("resnet152", 152),
        ("inception_v3", 48),
        ("densenet121", 121),
    ],
)
def test_depth_is_the_number_in_the_name(analysed: Analysed, name: str, depth: int) -> None:
    assert analysed(name).depth == depth


@pytest.mark.parametrize("name", ["vgg16", "resnet50", "inception_v3", "densenet121"])
def test_totals_are_the_sums_of_the_layers(analysed: Analysed, name: str) -> None:
    a = analysed(name)
    assert a.macs == sum(row.macs for row in a.layers) == sum(s.macs for s in a.by_stage)
    assert a.activation_bytes == sum(r.activation_bytes for r in a.layers)
    assert a.activation_bytes == sum(s.bytes for s in a.by_stage)
    assert sum(s.layers for s in a.by_stage) == len(a.layers)
    assert a.peak_bytes == max(r.activation_bytes for r in a.layers)
    assert a.by_stage[-1].stage == anatomy.VECTOR
    sizes = [int(s.stage.split("x")[0]) for s in a.by_stage[:-1]]
    assert sizes == sorted(sizes, reverse=True)
    assert sum(a.macs_by_kind.values()) == a.macs
    assert a.macs_by_kind["norm"] == a.macs_by_kind["other"] == 0


# --- the formulas, on models small enough to count by hand --------------------------------------


@pytest.fixture(scope="module")
def tiny() -> Anatomy:
    """Input 8x8x3 -> Conv2D(4, 3x3, same) -> Depthwise 3x3 -> Separable(5, 3x3) -> Dense(10)."""
    keras = import_keras()
    layers = keras.layers
    inputs = keras.Input((8, 8, 3), name="image")
    x = layers.Conv2D(4, 3, padding="same", name="conv")(inputs)  # 8x8x4
    x = layers.DepthwiseConv2D(3, name="dw")(x)  # 6x6x4
    x = layers.SeparableConv2D(5, 3, name="sep")(x)  # 4x4x5
    x = layers.Flatten(name="flat")(x)  # 80
    outputs = layers.Dense(10, name="fc")(x)
    return analyse(keras.Model(inputs, outputs), "vgg16")  # any record: only its metadata is used


def test_tiny_model_params_by_hand(tiny: Anatomy) -> None:
    conv = 3 * 3 * 3 * 4 + 4
    depthwise = 3 * 3 * 4 + 4
    separable = 3 * 3 * 4 + 4 * 5 + 5
    dense = 80 * 10 + 10
    assert tiny.params_by_kind == {
        "conv": conv,
        "depthwise": depthwise + separable,
        "dense": dense,
        "norm": 0,
        "other": 0,
    }
    assert tiny.params_total == tiny.params_trainable == 1023
    assert [row.params for row in tiny.layers] == [0, conv, depthwise, separable, 0, dense]


def test_tiny_model_macs_by_hand(tiny: Anatomy) -> None:
    conv = 8 * 8 * 4 * (3 * 3 * 3)
    depthwise = 6 * 6 * 4 * (3 * 3)
    separable = 4 * 4 * 4 * (3 * 3) + 4 * 4 * 5 * 4
    dense = 80 * 10
    assert [row.macs for row in tiny.layers] == [0, conv, depthwise, separable, 0, dense]
    assert tiny.macs == 9904
    assert tiny.macs_by_kind["depthwise"] == depthwise + separable


def test_tiny_model_activations_exactly(tiny: Anatomy) -> None:
    elements = [8 * 8 * 3, 8 * 8 * 4, 6 * 6 * 4, 4 * 4 * 5, 80, 10]
    assert [row.activation_bytes for row in tiny.layers] == [4 * e for e in elements]
    assert tiny.activation_bytes == 4 * sum(elements) == 3048
    assert (tiny.peak_layer, tiny.peak_bytes) == ("conv", 1024)
    assert [(s.stage, s.layers, s.bytes, s.macs) for s in tiny.by_stage] == [
        ("8x8", 2, 4 * (192 + 256), 6912),
        ("6x6", 1, 4 * 144, 1296),
        ("4x4", 1, 4 * 80, 896),
        (anatomy.VECTOR, 2, 4 * 90, 800),
    ]
    assert [row.output_shape for row in tiny.layers][:2] == [(8, 8, 3), (8, 8, 4)]
    assert tiny.depth == 4
    assert tiny.input_shape == [8, 8, 3]


def test_grouped_transposed_and_nested_layers() -> None:
    """Grouped conv, Conv2DTranspose and a Sequential block nested in a functional model."""
    keras = import_keras()
    layers = keras.layers
    inputs = keras.Input((6, 6, 4))
    x = layers.Conv2D(8, 3, padding="same", groups=2, use_bias=False)(inputs)  # 6x6x8
    block = keras.Sequential(
        [keras.Input((6, 6, 8)), layers.Conv2D(8, 1), layers.BatchNormalization()], name="block"
    )
    x = block(x)  # 6x6x8, one weighted layer inside
    y = layers.Conv2DTranspose(2, 2, strides=2)(x)  # 12x12x2
    a = analyse(keras.Model(inputs, y), "resnet18")
    assert [row.kind for row in a.layers] == ["other", "conv", "conv", "norm", "conv"]
    assert [row.macs for row in a.layers] == [
        0,
        36 * 8 * 9 * 4 // 2,
        36 * 8 * 8,
        0,
        36 * 8 * 4 * 2,
    ]
    assert a.params_by_kind["norm"] == 4 * 8
    assert a.params_by_kind["conv"] == 9 * 2 * 8 + (8 * 8 + 8) + (4 * 8 * 2 + 2)
    assert sum(a.params_by_kind.values()) == a.params_total
    assert a.depth == 3
    assert a.activation_bytes == 4 * (144 + 288 + 288 + 288 + 288)


def test_conv1d_counts_in_one_dimension() -> None:
    keras = import_keras()
    inputs = keras.Input((10, 3))
    outputs = keras.layers.Conv1D(4, 3)(inputs)  # 8x4
    a = analyse(keras.Model(inputs, outputs), "resnet18")
    assert a.macs == 8 * 4 * 3 * 3
    assert [s.stage for s in a.by_stage] == ["10", "8"]


# --- the documents ---------------------------------------------------------------------------


def test_json_document_has_exactly_the_documented_keys(tiny: Anatomy) -> None:
    doc = tiny.as_dict()
    assert list(doc) == [
        "arch",
        "input_shape",
        "preprocessing",
        "params",
        "params_by_kind",
        "macs",
        "activation_bytes",
        "weights_mb",
        "depth",
        "reference",
    ]
    assert list(doc["params"]) == ["total", "trainable", "non_trainable"]
    assert list(doc["params_by_kind"]) == ["conv", "depthwise", "dense", "norm", "other"]
    assert list(doc["activation_bytes"]) == ["total", "peak_layer", "by_stage"]
    assert doc["activation_bytes"]["peak_layer"] == {"name": "conv", "bytes": 1024}
    assert doc["activation_bytes"]["by_stage"][0] == {
        "stage": "8x8",
        "layers": 2,
        "bytes": 1792,
        "macs": 6912,
    }
    assert doc["reference"] == {"top1": 71.3, "top5": 90.1}
    assert (doc["arch"], doc["preprocessing"], doc["input_shape"]) == ("vgg16", "caffe", [8, 8, 3])
    assert isinstance(doc["macs"], int)
    assert doc["params"]["total"] == 1023
    layers = tiny.as_dict(layers=True)["layers"]
    assert layers[-1] == {
        "name": "fc",
        "kind": "dense",
        "output_shape": [10],
        "params": 810,
        "macs": 800,
        "activation_bytes": 40,
    }


def test_json_document_is_json(analysed: Analysed) -> None:
    import json

    doc = analysed("resnet18").as_dict(layers=True)
    assert json.loads(json.dumps(doc)) == doc
    assert doc["params"]["trainable"] == 11_689_512


def test_csv_rows_are_the_layer_table_in_raw_numbers(tiny: Anatomy) -> None:
    header, rows = anatomy.rows(tiny)
    assert header == ["name", "kind", "output_shape", "params", "macs", "activation_bytes"]
    assert rows[0] == ["image", "other", "8x8x3", 0, 0, 768]
    assert rows[-1] == ["fc", "dense", "10", 810, 800, 40]
    assert len(rows) == len(tiny.layers)


def test_render_prints_human_numbers(analysed: Analysed) -> None:
    from rich.console import Console

    console = Console(width=160, record=True)
    for renderable in anatomy.render(analysed("vgg16"), layers=True):
        console.print(renderable)
    text = console.export_text()
    for expected in (
        "vgg16",
        "224x224x3",
        "caffe",
        "depth 16",
        "71.3%",
        "90.1%",
        "527.8 MB",
        "138.36M",
        "15.47 G",
        "89.4%",
        "12.2 MB",
        "block1_conv1",
        "fc1",
    ):
        assert expected in text
    short = Console(width=160, record=True)
    for renderable in anatomy.render(analysed("vgg16"), layers=False):
        short.print(renderable)
    assert "fc1" not in short.export_text()


def test_human_formats() -> None:
    assert human(138_357_544) == "138.36M"
    assert human(999) == "999"
    assert anatomy.human_macs(15_470_264_320) == "15.47 G"
    assert human_bytes(12_845_056) == "12.2 MB"
    assert human_bytes(512) == "512 B"


def test_import_does_not_load_tensorflow() -> None:
    code = "import sys, cnncli.anatomy; sys.exit(len({'tensorflow', 'keras'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# --- every architecture (minutes: `pytest -m heavy`) -------------------------------------------


@pytest.mark.heavy
@pytest.mark.parametrize("name", list(registry.ARCHS))
def test_every_registry_architecture(name: str) -> None:
    a = _build_and_analyse(name)
    assert a.params_total == registry.get(name).params
    assert sum(a.params_by_kind.values()) == a.params_total
    assert a.depth > 0
    assert a.macs > 0
    import_keras().backend.clear_session()


def test_summary_command_json_and_layers(cli) -> None:
    run = cli("summary", "ResNet-18", "--format", "json", "--layers")
    assert run.exit_code == 0, run.stderr
    doc = run.json()
    assert doc["arch"] == "resnet18" and doc["depth"] == 18
    assert doc["params"]["trainable"] == 11_689_512
    assert sum(row["params"] for row in doc["layers"]) == doc["params"]["total"]
    assert abs(doc["macs"] / 1.8e9 - 1) < 0.05


def test_summary_command_table_names_the_lessons(cli) -> None:
    run = cli("summary", "mobilenet_0.25")
    assert run.exit_code == 0, run.stderr
    assert "depthwise" in run.stdout and "224x224" in run.stdout
    assert "fc1" not in run.stdout  # no layer table without --layers


def test_summary_of_unknown_arch_is_a_usage_error(cli) -> None:
    assert cli("summary", "alexnet").exit_code == 2
