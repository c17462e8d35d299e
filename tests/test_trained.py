"""A trained model wherever a registry model goes: `--model BUNDLE` on classify (both engines,
the compiled-model cache, --resume), explain, compare and bench, and in the Python API; its
own labels (no WordNet ids), its own resize policy, and one clear line for a folder that is not
a usable bundle.

The bundle is `conftest.write_bundle`'s (MobileNet-0.25 cut at its pooling input under a
three-colour head), built once for the session and converted once into the session's cache.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cnncli
from cnncli import bundle, litert
from cnncli.cache import ModelCache
from cnncli.env import Environment
from cnncli.errors import UsageError
from cnncli.networks import BundleNetwork
from tests.conftest import (
    COLOURS,
    SESSION_CACHE,
    colour_photo,
    run_cli,
    run_reporting_imports,
)
from tests.test_bundle import METADATA, tiny_model

pytestmark = pytest.mark.skipif(not litert.available(), reason="ai-edge-litert is not installed")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, Path]:
    """One noisy photo of each colour the bundle knows, named by its colour."""
    folder = tmp_path_factory.mktemp("colours")
    return {
        name: colour_photo(folder / f"{name}.png", channel, seed=channel)
        for name, channel in COLOURS.items()
    }


@pytest.fixture(scope="module")
def wide(tmp_path_factory) -> Path:
    """A 3:1 photo, red on the outer thirds and green in the middle: squashed whole (`stretch`,
    how the bundle was trained) it is mostly red; its centre square (`crop`) is all green."""
    pixels = np.full((96, 288, 3), 90.0)
    pixels[:, :96, 0] = pixels[:, 192:, 0] = 210
    pixels[:, 96:192, 1] = 210
    noisy = pixels + np.random.default_rng(1).normal(0, 25, pixels.shape)
    path = tmp_path_factory.mktemp("wide") / "wide.png"
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(path)
    return path


def classify(*args: object) -> dict:
    run = run_cli("classify", *args, "-f", "json")
    assert run.exit_code == 0, run.stderr
    return run.json()


def test_classify_labels_with_the_bundles_classes_on_both_engines(trained, photos):
    images = list(photos.values())
    docs = {e: classify(*images, "-m", trained, "-e", e, "-k", "10") for e in ("keras", "litert")}
    for engine, doc in docs.items():
        assert (doc["arch"], doc["weights"], doc["engine"]) == ("colours", str(trained), engine)
        for (colour, image), result in zip(photos.items(), doc["results"], strict=True):
            assert result["image"] == str(image)
            assert result["model"].startswith("colours@sha256:")
            # --top 10 of three classes shows the three, ranked; no class has a WordNet id.
            predictions = result["predictions"]
            assert sorted(p["label"] for p in predictions) == sorted(COLOURS)
            assert [p["rank"] for p in predictions] == [1, 2, 3]
            assert {p["wnid"] for p in predictions} == {None}
            assert predictions[0]["label"] == colour
            assert predictions[0]["index"] == list(COLOURS).index(colour)
    for ours, ref in zip(docs["litert"]["results"], docs["keras"]["results"], strict=True):
        assert ours["model"] == ref["model"]
        assert [p["index"] for p in ours["predictions"]] == [p["index"] for p in ref["predictions"]]
        np.testing.assert_allclose(
            [p["score"] for p in ours["predictions"]],
            [p["score"] for p in ref["predictions"]],
            atol=1e-4,
        )


def test_the_table_of_a_bundle_has_no_wnid_column(trained, photos):
    run = run_cli("classify", photos["red"], "-m", trained, "-k", "2")
    assert run.exit_code == 0, run.stderr
    header = next(line for line in run.stdout.splitlines() if "label" in line)
    assert header.split() == ["#", "label", "score"]
    assert "red" in run.stdout


def test_a_cached_bundle_runs_without_tensorflow(trained, photos, tmp_path):
    args = ("classify", photos["blue"], "-m", trained, "-f", "json")
    first = run_cli(*args, tmp=tmp_path)
    assert first.exit_code == 0 and "converting colours for LiteRT" in first.stderr
    warm = run_reporting_imports(tmp_path, *args)
    assert warm.returncode == 0, warm.stderr
    assert json.loads(warm.stderr) == []  # neither TensorFlow nor Keras was imported
    assert json.loads(warm.stdout)["results"] == first.json()["results"]


def test_the_cache_knows_a_bundle_by_its_digest(trained, tmp_path):
    """Warm runs take the files' hashes from the cache's memo; the identity is still the
    bundle's own digest, not a second notion of its content."""
    loaded = bundle.load(trained)
    network = BundleNetwork(loaded)
    cache = ModelCache(tmp_path)
    assert network.identity(cache) == f"sha256:{loaded.digest}"
    assert network.identity(cache) == f"sha256:{loaded.digest}"  # from the memo this time


def test_a_changed_bundle_is_converted_again(trained, photos, tmp_path):
    """The cache is keyed on the bundle's content: a bundle retrained in place (here, its
    metadata edited) is a new entry, never the old model under the new labels."""
    copy = tmp_path / "colours"
    copy.mkdir()
    for name in (bundle.MODEL, bundle.METADATA):
        (copy / name).write_bytes((trained / name).read_bytes())
    cache = tmp_path / "cache"
    before = run_cli("classify", photos["red"], "-m", copy, "-f", "json", tmp=cache)
    metadata = json.loads((copy / bundle.METADATA).read_text())
    metadata["classes"] = ["bleu", "vert", "rouge"]
    (copy / bundle.METADATA).write_text(json.dumps(metadata))
    after = run_cli("classify", photos["red"], "-m", copy, "-f", "json", tmp=cache)
    assert "converting" in after.stderr
    [old], [new] = before.json()["results"], after.json()["results"]
    assert new["model"] != old["model"]
    assert new["predictions"][0]["label"] == "rouge"


def test_a_bundle_replays_the_resize_it_was_trained_with(trained, wide):
    [stretched] = classify(wide, "-m", trained, "-k", "1")["results"]
    assert stretched["predictions"][0]["label"] == "red"
    cropped = run_cli("classify", wide, "-m", trained, "-k", "1", "--resize", "crop", "-f", "json")
    assert cropped.json()["results"][0]["predictions"][0]["label"] == "green"
    assert cropped.stderr.splitlines() == [
        "cnn: warning: colours was trained on --resize stretch pictures; --resize crop shows it "
        "pictures unlike its training's"
    ]


def test_explain_a_bundle_by_its_own_class_names(trained, photos):
    run = run_cli("explain", photos["green"], "-m", trained, "-c", "green,0", "-f", "json")
    assert run.exit_code == 0, run.stderr
    green, blue = run.json()
    assert green["arch"] == "colours" and green["weights"] == str(trained)
    assert green["class"]["label"] == "green" and green["class"]["wnid"] is None
    assert blue["class"]["label"] == "blue" and green["class"]["score"] > blue["class"]["score"]
    heat = np.array(green["heatmap"])
    assert heat.shape == (7, 7) and heat.max() == pytest.approx(1.0)  # MobileNet's feature map
    table = run_cli("explain", photos["red"], "-m", trained)
    assert table.stdout.startswith(f"{photos['red']}  colours  red (#2)  score ")


def test_an_unknown_class_of_a_bundle_lists_its_classes(trained, photos):
    run = run_cli("explain", photos["red"], "-m", trained, "-c", "purple")
    assert run.exit_code == 2
    assert run.stderr.splitlines() == [
        "cnn: error: unknown colours class 'purple': give a label (blue, green, red) or an "
        "index (0-2)"
    ]


def test_compare_puts_a_bundle_beside_an_architecture(trained, photos, tmp_path):
    montage = tmp_path / "montage.png"
    args = ("-a", "mobilenet_0.25", "-w", "none", "-m", trained, "-k", "2", "-f", "json")
    run = run_cli("compare", photos["red"], *args, "--montage", montage)
    assert run.exit_code == 0, run.stderr
    doc = run.json()
    assert [(m["arch"], m["weights"]) for m in doc["models"]] == [
        ("mobilenet_0.25", "none"),
        ("colours", str(trained)),
    ]
    ours = doc["models"][1]
    assert ours["predictions"][0]["label"] == "red" and ours["predictions"][0]["wnid"] is None
    with Image.open(montage) as sheet:  # a panel per model, side by side
        assert sheet.width > 1.5 * sheet.height


def test_compare_with_models_alone_runs_no_default_architecture(trained, photos):
    run = run_cli("compare", photos["red"], "-m", f"{trained},{trained}", "-f", "json")
    assert run.exit_code == 0, run.stderr
    doc = run.json()
    assert [m["arch"] for m in doc["models"]] == ["colours", "colours"]
    assert doc["majority"] == "red"
    conflicting = run_cli("compare", photos["red"], "-m", trained, "-w", "none")
    assert conflicting.exit_code == 2 and "--weights goes with --arch" in conflicting.stderr


def test_bench_times_a_bundle_from_the_cache(trained):
    run = run_cli("bench", "-m", trained, "-e", "litert", "--repeats", "1", "-f", "json")
    assert run.exit_code == 0, run.stderr
    [result] = run.json()["results"]
    assert (result["arch"], result["engine"]) == ("colours", "litert")
    assert result["cold_process_s"] > 0 and result["images_per_s"] > 0


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_resume_refuses_to_mix_two_models_results(trained, photos, tmp_path, fmt):
    out = tmp_path / f"labels.{fmt}"
    first = run_cli("classify", photos["red"], "-m", trained, "-f", fmt, "-o", out)
    assert first.exit_code == 0, first.stderr
    written = out.read_bytes()
    [tag] = {record["model"] for record in records(out, fmt)}
    assert tag.startswith("colours@sha256:")
    other = ("-a", "mobilenet_0.25", "-w", "none")
    run = run_cli("classify", *photos.values(), *other, "-f", fmt, "-o", out, "--resume")
    assert run.exit_code == 1
    warning, line = run.stderr.splitlines()
    assert warning.startswith("cnn: warning: mobilenet_0.25: random weights")
    assert line == (
        f"cnn: error: {out}: holds results of {tag}, not of mobilenet_0.25@none; --resume adds "
        "to a run of the same model: rerun with that model or choose another --output"
    )
    assert out.read_bytes() == written
    same = run_cli("classify", *photos.values(), "-m", trained, "-f", fmt, "-o", out, "--resume")
    assert same.exit_code == 0, same.stderr
    held = 1 if fmt == "jsonl" else 0  # CSV redoes its last image (a crash can cut its rows)
    assert same.stderr.startswith(f"{3 - held} classified, 0 failed")
    assert {record["model"] for record in records(out, fmt)} == {tag}
    assert {record["image"] for record in records(out, fmt)} == set(map(str, photos.values()))


def records(path: Path, fmt: str) -> list[dict]:
    """The records of a results file, as dictionaries (a CSV row per image and rank)."""
    text = path.read_text(encoding="utf-8")
    if fmt == "csv":
        return list(csv.DictReader(io.StringIO(text)))
    return [json.loads(line) for line in text.splitlines()]


def write_broken(folder: Path, how: str) -> Path:
    """A folder that `--model` must refuse, broken as `how` says."""
    if how == "a file":
        folder.write_text("not a folder")
        return folder
    if how == "newer":
        bundle.write(folder, tiny_model(), METADATA)
        metadata = json.loads((folder / bundle.METADATA).read_text())
        (folder / bundle.METADATA).write_text(json.dumps({**metadata, "version": 99}))
    elif how == "code":
        bundle.write(folder, tiny_model(lambda_layer=True), METADATA)
    elif how == "classes":
        bundle.write(folder, tiny_model(), {**METADATA, "classes": ["a", "b"]})
    else:
        folder.mkdir()
    return folder


@pytest.mark.parametrize(
    ("how", "says"),
    [
        ("a file", "not a folder; give the folder `cnn train` wrote"),
        ("empty", "not a trained model (no cnn-model.json)"),
        ("newer", "format version 99 is newer than this cnn reads (1); upgrade cnncli"),
        ("code", "its model holds code (a Lambda layer), which cnn never runs from a file"),
        ("classes", "its model has 3 outputs but its metadata names 2 classes"),
    ],
)
def test_what_is_not_a_usable_bundle_is_one_line_and_status_2(tmp_path, photos, how, says):
    folder = write_broken(tmp_path / "model", how)
    run = run_cli("classify", photos["red"], "-m", folder, "-e", "keras", tmp=tmp_path / "cache")
    assert run.exit_code == 2, run.stderr
    [line] = run.stderr.splitlines()
    assert line.startswith("cnn: error: ") and says in line and str(folder) in line


def test_a_bundle_is_named_instead_of_an_architecture_not_with_one(trained, photos):
    run = run_cli("classify", photos["red"], "-m", trained, "-a", "vgg16", "-w", "none")
    assert run.exit_code == 2
    assert run.stderr.splitlines() == [
        f"cnn: error: --model {trained} is a whole trained model: drop --arch and --weights"
    ]


def test_the_python_api_loads_a_bundle_by_keyword(trained, photos):
    env = Environment(cache_dir=SESSION_CACHE)
    model = cnncli.load(model=trained, engine="litert", env=env)
    assert [cls.label for cls in model.labels] == list(COLOURS)
    results = model.classify(list(photos.values()), top=1)
    cli = classify(*photos.values(), "-m", trained, "-k", "1", "-e", "litert")
    assert [r.as_dict() for r in results] == cli["results"]
    with pytest.raises(UsageError, match="drop --arch"):
        cnncli.load("resnet50", model=trained, env=env)
