"""Grad-CAM: heat where the evidence is, every architecture's feature map, and its renderings."""

from __future__ import annotations

import dataclasses
import io
import json
import time

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from cnncli import gradcam, labels, overlays, registry
from cnncli.choices import Resize
from cnncli.errors import CnnError, UsageError
from cnncli.images import load_array
from cnncli.loader import Weights, build
from cnncli.networks import RegistryNetwork
from tests.conftest import MOBILENET_WEIGHTS, SAMPLES, needs_shared

# --- a model whose classes read one quadrant each --------------------------------------------

GRID = 16  # the quadrant model's feature map is GRID x GRID (64 px input, stride 4)
QUADRANTS = dataclasses.replace(
    registry.get("mobilenet_0.25"),
    name="quadrants",
    input_size=64,
    preprocessing="none",
    feature_layer="features",
)
#: Its classes: what each one reads.
CORNERS = labels.Labels.of_names(["top right", "bottom left", "constant"], "quadrants")


@pytest.fixture(scope="module")
def quadrant_model():
    """Channel 0 detects red, channel 1 green (4x4 patches, stride 4); a hand-set head makes
    class 0's logit the red in the top-right quadrant, class 1's the green in the bottom-left,
    class 2's a constant. A transposed or flipped heatmap would land in the wrong quadrant."""
    from cnncli.tf_runtime import import_keras

    keras = import_keras()
    inputs = keras.Input((64, 64, 3))
    features = keras.layers.Conv2D(2, 4, strides=4, activation="relu", name="features")(inputs)
    flat = keras.layers.Flatten()(features)
    outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(flat)
    model = keras.Model(inputs, outputs)
    detect = np.zeros((4, 4, 3, 2), np.float32)
    detect[:, :, 0, 0], detect[:, :, 1, 0] = 1, -1  # red minus green
    detect[:, :, 1, 1], detect[:, :, 0, 1] = 1, -1  # green minus red
    model.get_layer("features").set_weights([detect / (16 * 255), np.zeros(2, np.float32)])
    head = np.zeros((GRID, GRID, 2, 3), np.float32)
    half = GRID // 2
    head[:half, half:, 0, 0] = 8 / half**2  # mean red of the top-right quadrant, times 8
    head[half:, :half, 1, 1] = 8 / half**2  # mean green of the bottom-left quadrant, times 8
    model.get_layer("predictions").set_weights([head.reshape(-1, 3), np.zeros(3, np.float32)])
    return model


@pytest.fixture(scope="module")
def red_and_green(tmp_path_factory):
    """A noisy grey photo with a red square top-right and a smaller green one bottom-left."""
    pixels = np.random.default_rng(0).uniform(100, 160, (64, 64, 3))
    pixels[6:26, 38:58] = (230, 20, 20)
    pixels[42:56, 8:22] = (20, 230, 20)
    path = tmp_path_factory.mktemp("quadrants") / "red_and_green.png"
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return path


def mass(heat: np.ndarray, rows: slice, cols: slice) -> float:
    return float(heat[rows, cols].sum() / heat.sum())


def test_each_class_heats_the_quadrant_it_reads(quadrant_model, red_and_green):
    red, green = gradcam.explain(
        quadrant_model, QUADRANTS, CORNERS, red_and_green, None, 2, Resize.stretch
    )
    assert [red.target.index, green.target.index] == [0, 1]  # best first
    assert red.score > green.score
    half = GRID // 2
    top_right = mass(red.heat, slice(0, half), slice(half, None))
    bottom_left = mass(green.heat, slice(half, None), slice(0, half))
    print(f"quadrants: class 0 {top_right:.3f} top-right, class 1 {bottom_left:.3f} bottom-left")
    assert top_right > 0.8 and bottom_left > 0.8
    assert red.heat.shape == (GRID, GRID) and red.heat.max() == pytest.approx(1.0)


def test_a_class_without_evidence_has_zero_heat_not_nan(quadrant_model, red_and_green):
    pixels = load_array(red_and_green, 64, Resize.stretch)[None]
    heat = gradcam.gradcam(quadrant_model, QUADRANTS, pixels, 2)  # class 2 reads nothing
    assert np.array_equal(heat, np.zeros((GRID, GRID)))


def test_json_heatmap_is_the_feature_map_in_unit_range(quadrant_model, red_and_green):
    [result] = gradcam.explain(
        quadrant_model, QUADRANTS, CORNERS, red_and_green, [0], 1, Resize.crop
    )
    doc = json.loads(json.dumps(result.as_dict()))
    assert set(doc) == {"image", "arch", "class", "heatmap"}
    assert doc["class"] == {  # a class of the model's own: no WordNet id
        "index": 0,
        "wnid": None,
        "label": "top right",
        "score": pytest.approx(result.score),
    }
    heat = np.array(doc["heatmap"])
    assert heat.shape == tuple(quadrant_model.get_layer("features").output.shape[1:3])
    assert heat.min() >= 0 and heat.max() <= 1


# --- real ImageNet weights: a cat beside an espresso -----------------------------------------


@pytest.fixture(scope="module")
def mobilenet():
    arch = registry.get("mobilenet_0.25")
    return arch, build(arch, Weights("file", MOBILENET_WEIGHTS))


@pytest.fixture(scope="module")
def cat_and_coffee(tmp_path_factory):
    """448x224: the cat photo squashed to 224x224 on the left, the espresso on the right."""
    canvas = Image.new("RGB", (448, 224))
    for x, name in ((0, "cat.jpg"), (224, "coffee.jpg")):
        with Image.open(SAMPLES / name) as photo:
            canvas.paste(photo.convert("RGB").resize((224, 224), Image.BILINEAR), (x, 0))
    path = tmp_path_factory.mktemp("canvas") / "cat_and_coffee.png"
    canvas.save(path)
    return path


@needs_shared
@pytest.mark.parametrize(("label", "half"), [("Egyptian_cat", "left"), ("espresso", "right")])
def test_the_class_heats_its_own_half(mobilenet, cat_and_coffee, label, half):
    arch, model = mobilenet
    imagenet = labels.imagenet()
    target = imagenet.resolve(label)
    [result] = gradcam.explain(
        model, arch, imagenet, cat_and_coffee, [target.index], 1, Resize.stretch
    )
    heat, seen = overlays.heat_on_photo(result.photo, result.heat, arch.input_size, Resize.stretch)
    assert heat.shape == (224, 448) and seen.all()
    left = mass(heat, slice(None), slice(0, 224))
    share = left if half == "left" else 1 - left
    print(f"{label}: {share:.3f} of the heat on the {half} half")
    assert share > 0.7


@needs_shared
def test_crop_heat_covers_the_crop_and_nothing_else(mobilenet):
    arch, model = mobilenet
    [result] = gradcam.explain(
        model, arch, labels.imagenet(), SAMPLES / "cat.jpg", None, 1, Resize.crop
    )
    assert result.target.label == "Egyptian_cat"
    heat, seen = overlays.heat_on_photo(result.photo, result.heat, 224, Resize.crop)
    # cat.jpg is 451x300: scaled to 385x256, the centre 224 square is x 80-304, y 16-240, which
    # is x 94-356, y 19-281 on the photo.
    columns, rows = np.flatnonzero(seen.any(axis=0)), np.flatnonzero(seen.any(axis=1))
    assert abs(columns[0] - 94) <= 1 and abs(columns[-1] - 356) <= 1
    assert abs(rows[0] - 19) <= 1 and abs(rows[-1] - 281) <= 1
    assert heat[~seen].max() < 0.5 and heat[seen].max() > 0.9


# --- every registry entry's feature map -------------------------------------------------------

CHEAP = [
    "mobilenet_0.25",
    "mobilenet_v3_small",
    "nasnet_mobile",
    "efficientnet_b0",
    "resnet18",
    "convnext_tiny",
]


def check_feature_map(name: str) -> None:
    """The record's feature map is 4-D, the logits are what the softmax reads, and a random
    model's Grad-CAM has the feature map's shape in [0, 1]."""
    arch = registry.get(name)
    model = build(arch, Weights("none"))
    layer = gradcam.feature_layer(model, arch)
    _, height, width, _ = layer.output.shape
    size = arch.input_size
    pixels = np.random.default_rng(1).uniform(0, 255, (1, size, size, 3)).astype(np.float32)
    cam = gradcam.GradCam(model, arch, pixels)
    probabilities = np.asarray(model(gradcam.preprocess(pixels, arch.preprocessing)))[0]
    np.testing.assert_allclose(cam.scores, probabilities, atol=1e-5)
    heat = cam.heat(int(np.argmax(probabilities)))
    assert heat.shape == (height, width) == tuple(cam.features.shape[1:3])
    assert np.isfinite(heat).all() and heat.min() >= 0 and heat.max() <= 1


@pytest.mark.parametrize("name", CHEAP)
def test_cheap_architectures_have_a_grad_cam_layer(name):
    check_feature_map(name)


@pytest.mark.heavy
@pytest.mark.parametrize("name", list(registry.ARCHS))
def test_every_architecture_has_a_grad_cam_layer(name):
    start = time.perf_counter()
    check_feature_map(name)
    print(f"{name}: {time.perf_counter() - start:.1f} s")


# --- renderings --------------------------------------------------------------------------------

UNSEEN = round(255 * overlays.UNSEEN_BRIGHTNESS)


@pytest.mark.parametrize("resize", list(Resize))
def test_overlay_has_the_photos_size_and_greys_out_what_the_crop_cut(resize):
    photo = Image.new("RGB", (448, 224), "white")
    image = overlays.overlay(photo, np.ones((7, 7)), resize, 224, "tabby 0.500", alpha=0.5)
    assert image.size == photo.size
    pixels = np.asarray(image).astype(int)
    # Crop: scaled to 512x256, the centre square is x 144-368, y 16-240, which is x 126-322,
    # y 14-210 on the photo; the band between y 20 and the caption is inside it.
    band = pixels[20:150]
    margins = np.concatenate([band[:, :124], band[:, 324:]], axis=1)
    centre = band[:, 128:320]
    assert (np.abs(centre - UNSEEN).max(axis=2) > 20).all()
    if resize is Resize.crop:
        assert (np.abs(margins - UNSEEN) <= 1).all()
    else:
        assert (np.abs(margins - UNSEEN).max(axis=2) > 20).all()


def test_caption_is_drawn_on_a_dark_strip():
    photo = Image.new("RGB", (300, 200), "white")
    bare = np.asarray(overlays.overlay(photo, np.zeros((7, 7)), Resize.stretch, 224, alpha=0.0))
    captioned = np.asarray(overlays.overlay(photo, np.zeros((7, 7)), Resize.stretch, 224, "cup"))
    assert (bare == 255).all()
    bottom = captioned[-5:].astype(int)
    assert bottom.mean() < 100  # the strip
    assert (captioned[-20:] == 255).all(axis=2).any()  # the white letters on it


def test_montage_puts_the_panels_side_by_side_at_one_height():
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    sizes = [(200, 100), (50, 50), (100, 200)]
    panels = [
        (Image.new("RGB", size, colour), f"arch{i}\nlabel 0.5")
        for i, (size, colour) in enumerate(zip(sizes, colours, strict=True))
    ]
    sheet = overlays.montage(panels, height=100)
    row = np.asarray(sheet)[sheet.height - 50]
    widths = [int((row == colour).all(axis=1).sum()) for colour in colours]
    assert widths == [200, 100, 50]
    assert sheet.height > 100 and sheet.width > sum(widths)


def test_a_comparison_has_a_titled_panel_per_architecture(quadrant_model, red_and_green):
    quadrants = RegistryNetwork(QUADRANTS, Weights("none"))  # labelled as ImageNet's first three
    mobilenet = RegistryNetwork(registry.get("mobilenet_0.25"), Weights("none"))
    models = [
        (quadrants, Resize.crop, lambda: quadrant_model),
        (mobilenet, Resize.stretch, mobilenet.keras_model),
    ]
    explanations = gradcam.explain_each(red_and_green, models, [0, 281])
    assert [(e.arch.name, e.target.index, e.resize) for e in explanations] == [
        ("quadrants", 0, Resize.crop),
        ("mobilenet_0.25", 281, Resize.stretch),
    ]
    assert explanations[0].title.startswith("quadrants\ntench ")
    assert explanations[1].title.startswith("mobilenet_0.25\ntabby ")
    sheet = gradcam.comparison_montage(explanations)
    panel = overlays.PANEL_HEIGHT  # the 64x64 photo, scaled to the panel height
    assert sheet.height > panel and 2 * panel < sheet.width < 2 * panel + 60


def test_terminal_blocks_render_in_colour_and_without():
    heat = np.zeros((7, 7))
    heat[0, 0] = 1.0
    colour = Console(file=io.StringIO(), record=True, color_system="truecolor", width=80)
    colour.print(overlays.terminal_blocks(heat))
    lines = colour.export_text(clear=False).splitlines()
    assert lines == ["▀" * overlays.TERMINAL_COLUMNS] * (overlays.TERMINAL_COLUMNS // 2)
    assert "\x1b[38;2;" in colour.export_text(styles=True)
    plain = Console(file=io.StringIO(), record=True, color_system=None, width=80)
    plain.print(overlays.terminal_blocks(heat))
    shaded = plain.export_text().splitlines()
    assert len(shaded) == overlays.TERMINAL_COLUMNS // 2
    assert shaded[0][0] == "█" and shaded[-1].strip() == ""


# --- classes and files ---------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["tabby", "Tabby", "281", "n02123045"])
def test_a_class_is_named_by_label_index_or_wnid(query):
    assert labels.imagenet().resolve(query).index == 281


def test_an_unknown_class_suggests_close_labels():
    with pytest.raises(UsageError, match="did you mean tabby"):
        labels.imagenet().resolve("tabbby")


def test_more_overlays_are_numbered_after_the_first(tmp_path):
    out = tmp_path / "cam.png"
    assert overlays.output_paths(out, 3) == [out, tmp_path / "cam_2.png", tmp_path / "cam_3.png"]


@pytest.mark.parametrize("name", ["missing/cam.png", "cam.unknown"])
def test_an_unwritable_output_is_one_error(tmp_path, name):
    with pytest.raises(CnnError, match="cannot write"):
        overlays.save(Image.new("RGB", (4, 4)), tmp_path / name)


# --- the commands ------------------------------------------------------------------------------

MOBILENET = ("-a", "mobilenet_0.25", "-w", MOBILENET_WEIGHTS)


@needs_shared
def test_explain_json_explains_the_top1_class(cli):
    run = cli("explain", SAMPLES / "coffee.jpg", *MOBILENET, "-f", "json")
    assert run.exit_code == 0, run.stderr
    doc = run.json()
    assert set(doc) == {"image", "arch", "class", "heatmap", "weights", "output"}
    labelled = cli(
        "classify", SAMPLES / "coffee.jpg", *MOBILENET, "-e", "keras", "-k", "1", "-f", "json"
    ).json()["results"][0]["predictions"][0]
    assert doc["class"]["index"] == labelled["index"]
    assert doc["class"]["score"] == pytest.approx(labelled["score"], rel=1e-4)
    heat = np.array(doc["heatmap"])
    assert heat.shape == (7, 7) and heat.min() >= 0 and heat.max() == pytest.approx(1.0)
    assert doc["output"] is None and doc["weights"] == str(MOBILENET_WEIGHTS)


@needs_shared
def test_explain_top_k_writes_an_overlay_per_class_at_the_photos_size(cli, tmp_path):
    out = tmp_path / "heat.png"
    run = cli("explain", SAMPLES / "cat.jpg", *MOBILENET, "-k", "2", "-o", out, "-f", "json")
    assert run.exit_code == 0, run.stderr
    first, second = run.json()
    assert [first["output"], second["output"]] == [str(out), str(tmp_path / "heat_2.png")]
    assert first["class"]["score"] >= second["class"]["score"]
    with Image.open(SAMPLES / "cat.jpg") as photo:
        for path in (out, tmp_path / "heat_2.png"):
            with Image.open(path) as overlay:
                assert overlay.size == photo.size


@needs_shared
def test_explain_in_a_terminal_draws_the_heat_under_the_label(cli):
    run = cli("explain", SAMPLES / "cat.jpg", *MOBILENET, "--class", "tabby", colors=False)
    assert run.exit_code == 0, run.stderr
    heading, *blocks = run.stdout.rstrip("\n").splitlines()
    assert "mobilenet_0.25" in heading and "tabby (n02123045, #281)" in heading
    assert len(blocks) == overlays.TERMINAL_COLUMNS // 2
    assert set("".join(blocks)) <= set(overlays.SHADES) and "█" in "".join(blocks)


def test_explain_an_unknown_class_is_a_usage_error(cli):
    run = cli("explain", SAMPLES / "cat.jpg", "-a", "mobilenet_0.25", "-w", "none", "-c", "tabbby")
    assert run.exit_code == 2
    assert "did you mean tabby" in run.stderr and "Traceback" not in run.stderr


def test_compare_explain_writes_a_montage_of_every_architecture(cli, tmp_path):
    out = tmp_path / "montage.png"
    archs = "mobilenet_0.25,mobilenet_v3_small"
    run = cli(
        "compare",
        SAMPLES / "cat.jpg",
        "-a",
        archs,
        "-w",
        "none",
        "-e",
        "keras",
        "--montage",
        out,
        "-f",
        "json",
    )
    assert run.exit_code == 0, run.stderr
    assert [m["arch"] for m in run.json()["models"]] == archs.split(",")
    with Image.open(SAMPLES / "cat.jpg") as photo, Image.open(out) as sheet:
        height = overlays.PANEL_HEIGHT
        panel = round(photo.width * height / photo.height)  # each photo at the panel height
        assert sheet.height > height and 2 * panel < sheet.width < 2 * panel + 60
