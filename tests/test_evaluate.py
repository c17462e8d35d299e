"""`cnn evaluate`: top-1/top-5, per-class precision, recall and F1, the confusion matrix and the
worst mistakes, checked against counts made by hand (from `cnn classify`'s own answers, and on
hand-made scores); class folders named by a bundle's classes or by ImageNet's WordNet ids and
labels; every bad DATA one clear line.

The trained model is `conftest.write_bundle`'s (three colours), shared with test_trained.py
through the session; its data is a few generated photos per colour, two of them filed in the
wrong folder so that there are mistakes to find.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cnncli
from cnncli import evaluation, litert
from cnncli.env import Environment
from cnncli.labels import Labels
from tests.conftest import (
    COLOURS,
    MOBILENET_WEIGHTS,
    PHOTOS,
    SESSION_CACHE,
    colour_photo,
    needs_shared,
    run_cli,
)

pytestmark = pytest.mark.skipif(not litert.available(), reason="ai-edge-litert is not installed")


def colour_folders(root: Path, per_class: int = 3) -> Path:
    """`per_class` photos of each colour in its folder, plus two filed wrongly: a red photo in
    green/ and a grey one in blue/."""
    for name, channel in COLOURS.items():
        for i in range(per_class):
            colour_photo(root / name / f"{name}_{i}.png", channel, seed=10 * channel + i)
    colour_photo(root / "green" / "nested" / "actually_red.png", COLOURS["red"], seed=99)
    colour_photo(root / "blue" / "grey.png", -1, seed=98)
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return colour_folders(tmp_path_factory.mktemp("evaluate") / "colours-data")


def evaluate(*args: object, tmp: Path | None = None) -> dict:
    run = run_cli("evaluate", *args, "-f", "json", tmp=tmp)
    assert run.exit_code == 0, run.stderr
    return run.json()


def by_hand(results: list[dict]) -> dict:
    """Top-1, the confusion counts, recall per class and the mistakes, counted from
    `cnn classify`'s answers, each photo's true class being its class folder."""
    pairs = [(truth(r["image"]), r["predictions"][0]["label"]) for r in results]
    confusion = Counter(pairs)
    support = Counter(true for true, _ in pairs)
    return {
        "top1": sum(true == predicted for true, predicted in pairs) / len(pairs),
        "confusion": [[confusion[t, p] for p in COLOURS] for t in COLOURS],
        "recall": {c: confusion[c, c] / support[c] for c in COLOURS},
        "mistakes": {r["image"] for r, (t, p) in zip(results, pairs, strict=True) if t != p},
    }


def truth(image: str) -> str:
    """The class folder a photo is in (class folders hold photos at any depth)."""
    return next(part for part in Path(image).parts if part in COLOURS)


@pytest.mark.parametrize("engine", ["keras", "litert"])
def test_evaluate_counts_what_classify_answers(trained, data, engine):
    classified = run_cli(
        "classify", data, "-r", "-m", trained, "-e", engine, "-k", "1", "-f", "json"
    )
    hand = by_hand(classified.json()["results"])
    doc = evaluate(data, "-m", trained, "-e", engine)
    assert (doc["arch"], doc["engine"], doc["data"]) == ("colours", engine, str(data))
    assert doc["model"] == classified.json()["results"][0]["model"]
    assert (doc["images"], doc["failed"]) == (11, 0)
    assert doc["top1"] == pytest.approx(hand["top1"]) and doc["top1"] < 1  # two were misfiled
    assert doc["top5"] is None  # three classes: every photo would be a top-5 hit
    assert doc["confusion"] == {
        "true": list(COLOURS),
        "predicted": list(COLOURS),  # the data has a folder for every class of the model
        "matrix": hand["confusion"],
    }
    classes = {c["label"]: c for c in doc["classes"]}
    assert [c["support"] for c in doc["classes"]] == [4, 4, 3]
    assert {c: classes[c]["recall"] for c in COLOURS} == pytest.approx(hand["recall"])
    assert {m["image"] for m in doc["worst"]} == hand["mistakes"]
    misfiled = next(m for m in doc["worst"] if m["image"].endswith("actually_red.png"))
    assert (misfiled["true"], misfiled["predicted"]) == ("green", "red")
    scores = [m["score"] for m in doc["worst"]]
    assert scores == sorted(scores, reverse=True)  # the most confident mistake first


def test_the_metrics_of_scores_made_by_hand():
    """Six classes (so top-5 means something), scores chosen so that every figure is known:
    class a: 2 photos, both right; class b: 2 photos, one taken for a, one for c (its true
    class second, so in the top 5); class c: 1 photo, right; class f: 1 photo, its true class
    ranked last (out of the top 5)."""
    labels = Labels.of_names("abcdef", "letters")
    tally = evaluation.Tally(labels, worst=2)
    one_hot = np.eye(6) * 0.5 + 0.1  # the class gets 0.6, the others 0.1 each
    for true, scores in [
        (0, one_hot[0]),
        (0, one_hot[0]),
        (1, np.array([0.5, 0.4, 0.02, 0.02, 0.03, 0.03])),
        (1, np.array([0.03, 0.3, 0.6, 0.03, 0.02, 0.02])),
        (2, one_hot[2]),
        (5, np.array([0.2, 0.2, 0.2, 0.2, 0.15, 0.05])),
    ]:
        tally.add(f"{labels[true].label}.png", true, scores)
    result = tally.evaluation([labels[i] for i in (0, 1, 2, 5)], {"arch": "x", "data": "d"})
    assert (result.images, result.top1, result.top5) == (6, 0.5, pytest.approx(5 / 6))
    assert result.predicted == ["a", "b", "c", "f", "(other)"]
    assert result.matrix.tolist() == [
        [2, 0, 0, 0, 0],
        [1, 0, 1, 0, 0],
        [0, 0, 1, 0, 0],
        [1, 0, 0, 0, 0],  # f taken for a (the first of four tied best)
    ]
    figures = {m.cls.label: (m.precision, m.recall, m.f1, m.support) for m in result.per_class()}
    assert figures == {
        "a": (pytest.approx(0.5), 1.0, pytest.approx(2 / 3), 2),
        "b": (None, 0.0, 0.0, 2),  # never predicted: no precision, and none of it found
        "c": (0.5, 1.0, pytest.approx(2 / 3), 1),
        "f": (None, 0.0, 0.0, 1),
    }
    assert result.macro() == {
        "precision": pytest.approx(0.5),
        "recall": pytest.approx(0.5),
        "f1": pytest.approx(1 / 3),  # as sklearn's f1_score(average="macro")
    }
    # The two worst of the three mistakes, most confident first.
    assert [(m.image, m.predicted.label, m.score) for m in result.mistakes] == [
        ("b.png", "c", 0.6),
        ("b.png", "a", 0.5),
    ]


def test_the_views_table_csv_and_plot(trained, data, tmp_path):
    plot = tmp_path / "confusion.png"
    table = run_cli("evaluate", data, "-m", trained, "--plot", plot, "--worst", "1")
    assert table.exit_code == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].startswith(f"colours on {data}: 11 images (0 failed), top-1 ")
    assert lines[0].endswith(", top-5 -")
    for title in (
        "per class",
        "confusion (rows: true class, columns: predicted)",
        "worst mistakes",
    ):
        assert title in lines
    assert any(line.split()[:2] == ["macro", "average"] for line in lines)
    with Image.open(plot) as picture:
        assert picture.format == "PNG" and picture.width > 200
    rows = list(
        csv.reader(io.StringIO(run_cli("evaluate", data, "-m", trained, "-f", "csv").stdout))
    )
    doc = evaluate(data, "-m", trained, "--worst", "1")
    assert len(doc["worst"]) == 1
    assert rows[0] == [
        "class",
        "index",
        "wnid",
        "support",
        "precision",
        "recall",
        "f1",
        *(f"predicted:{c}" for c in COLOURS),
    ]
    for row, figures, counts in zip(
        rows[1:], doc["classes"], doc["confusion"]["matrix"], strict=True
    ):
        assert row[:4] == [figures["label"], str(figures["index"]), "", str(figures["support"])]
        assert [int(n) for n in row[7:]] == counts


def test_a_photo_that_cannot_be_read_is_one_line_and_the_rest_are_measured(trained, tmp_path):
    root = colour_folders(tmp_path / "data", per_class=1)
    (root / "red" / "broken.jpg").write_bytes(b"not a photo")
    (root / "blue" / "notes.txt").write_text("not an image: skipped, not an error")
    run = run_cli("evaluate", root, "-m", trained, "-f", "json")
    assert run.exit_code == 1
    # (a conversion note comes first when no earlier test has cached the bundle's model)
    [line] = [text for text in run.stderr.splitlines() if not text.startswith("cnn: note: ")]
    assert line.startswith(f"cnn: error: {root / 'red' / 'broken.jpg'}: cannot identify image")
    doc = run.json()
    assert (doc["images"], doc["failed"]) == (5, 1)


def test_a_split_data_set_is_measured_on_its_held_out_part(trained, tmp_path):
    colour_folders(tmp_path / "data" / "val", per_class=1)
    colour_folders(tmp_path / "data" / "train", per_class=2)
    run = run_cli("evaluate", tmp_path / "data", "-m", trained, "-f", "json")
    assert run.exit_code == 0, run.stderr
    assert run.stderr.splitlines() == [
        f"cnn: note: measuring {tmp_path / 'data' / 'val'}, the held-out split (not train/)"
    ]
    assert run.json()["images"] == 5


def imagenet_folder(root: Path, name: str) -> Path:
    (root / name).mkdir(parents=True)
    return root / name


@pytest.mark.parametrize(
    ("folders", "says"),
    [
        (["tabby", "Egyptian cat", "n02123159"], None),  # label, label with a space, WordNet id
        (["tabby", "tabbby"], "'tabbby' names no ImageNet class; name class folders by WordNet "),
        (["crane"], "'crane' names 2 ImageNet classes; name the folder by WordNet id (n020"),
    ],
)
def test_imagenet_class_folders_are_named_by_wordnet_id_or_label(tmp_path, folders, says):
    root = tmp_path / "val"
    for name in folders:
        Image.new("RGB", (40, 30), (120, 90, 60)).save(imagenet_folder(root, name) / "a.jpg")
    run = run_cli("evaluate", root, "-a", "mobilenet_0.25", "-w", "none", "-f", "json")
    if says is None:
        assert run.exit_code == 0, run.stderr
        doc = run.json()
        assert [c["wnid"] for c in doc["classes"]] == ["n02123045", "n02123159", "n02124075"]
        assert doc["confusion"]["predicted"][-1] == "(other)"
        assert doc["top5"] is not None
    else:
        assert run.exit_code == 2
        warning, line = run.stderr.splitlines()
        assert warning.startswith("cnn: warning: mobilenet_0.25: random weights")
        assert says in line and (str(root) in line)
        if "tabbby" in folders:
            assert "; did you mean tabby" in line


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda root: None, "does not exist; give a folder holding a folder of photos per class"),
        (lambda root: root.write_text("x"), "is not a folder"),
        (lambda root: root.mkdir(), "no class folders; put each class's photos in"),
        (
            lambda root: colour_photo(root / "purple" / "a.png", 0, 1),
            "'purple' is not a class of colours (its classes: blue, green, red)",
        ),
    ],
    ids=["missing", "a file", "empty", "unknown class"],
)
def test_data_that_cannot_be_measured_is_one_line_before_any_model_loads(
    trained, tmp_path, make, says
):
    root = tmp_path / "data"
    make(root)
    run = run_cli("evaluate", root, "-m", trained, tmp=tmp_path / "cache")
    assert run.exit_code == 2
    [line] = run.stderr.splitlines()
    assert line.startswith(f"cnn: error: {root}") and says in line
    assert not (tmp_path / "cache").exists()  # refused before the model was even looked up


def test_a_plot_name_matplotlib_is_not_asked_to_write_is_refused_before_measuring(
    trained, data, tmp_path
):
    plot = tmp_path / "confusion.jpg"
    run = run_cli("evaluate", data, "-m", trained, "--plot", plot, tmp=tmp_path / "cache")
    assert run.exit_code == 2
    assert run.stderr.splitlines() == [
        f"cnn: error: --plot {plot}: give a .png (or .svg, .pdf) file name"
    ]
    assert not plot.exists() and not (tmp_path / "cache").exists()  # nothing was measured


def test_photos_outside_class_folders_are_skipped_with_a_warning(trained, tmp_path):
    root = colour_folders(tmp_path / "data", per_class=1)
    colour_photo(root / "stray.png", 0, 1)
    run = run_cli("evaluate", root, "-m", trained, "-f", "json")
    assert run.exit_code == 0
    assert run.stderr.splitlines() == [
        f"cnn: warning: {root}: skipped 1 image(s) outside any class folder (first: stray.png); "
        "their class is the folder they are in"
    ]
    assert run.json()["images"] == 5


def test_the_model_must_be_named(tmp_path):
    run = run_cli("evaluate", tmp_path)
    assert run.exit_code == 2
    assert run.stderr.splitlines() == [
        "cnn: error: name the model to evaluate: --model BUNDLE or --arch ARCH"
    ]


def test_the_python_api_evaluates_like_the_command(trained, data):
    env = Environment(stderr=io.StringIO(), cache_dir=SESSION_CACHE)
    result = cnncli.evaluate(data, model=trained, env=env)
    assert result.as_dict() == evaluate(data, "-m", trained)


@needs_shared
def test_imagenet_photos_in_class_folders_give_the_top1_and_top5_counted_by_hand(tmp_path):
    """The labelled photos of ../shared, each linked into the folder of its first acceptable
    class (named by WordNet id or by label, alternately): evaluate's top-1 and top-5 are the
    share of photos whose class `cnn classify -k 5` puts first, and among the five."""
    expected = json.loads((PHOTOS / "expected.json").read_text())
    root, imagenet = tmp_path / "val", cnncli.labels.imagenet()
    for i, (name, indices) in enumerate(expected.items()):
        cls = imagenet[indices[0]]
        folder = root / (cls.wnid if i % 2 else cls.label)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).symlink_to(PHOTOS / name)
    model = ("-a", "mobilenet_0.25", "-w", MOBILENET_WEIGHTS)
    links = sorted(str(path) for path in root.rglob("*") if path.is_file())
    results = run_cli("classify", *links, *model, "-k", "5", "-f", "json").json()["results"]
    wanted = {r["image"]: expected[Path(r["image"]).name][0] for r in results}
    top1 = sum(r["predictions"][0]["index"] == wanted[r["image"]] for r in results)
    top5 = sum(wanted[r["image"]] in [p["index"] for p in r["predictions"]] for r in results)
    doc = evaluate(root, *model)
    assert doc["images"] == len(results) == 13
    assert [c["index"] for c in doc["classes"]] == sorted(set(wanted.values()))
    assert doc["top1"] == pytest.approx(top1 / 13) and doc["top5"] == pytest.approx(top5 / 13)
    assert (top1, top5) == (10, 11)  # counted by hand from `cnn classify -k 5` once
