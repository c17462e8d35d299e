"""`cnn classify` through the real CLI: output formats, batches, bad inputs, exit codes."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

from cnncli import labels, litert
from tests.conftest import SAMPLES

CAT = SAMPLES / "cat.jpg"
COFFEE = SAMPLES / "coffee.jpg"

# Cheap enough for CI, and one per kind: plain CNN with a size of its own (inception_v3 at
# 299), width multiplier, in-model preprocessing, squeeze-excite, NAS cell, the basic ResNet.
REPRESENTATIVE = [
    "mobilenet_0.25",
    "mobilenet_v2_0.35",
    "mobilenet_v3_small",
    "efficientnet_b0",
    "nasnet_mobile",
    "resnet18",
    "inception_v3",
]


def check_predictions(predictions: list[dict], top: int) -> None:
    assert [p["rank"] for p in predictions] == list(range(1, top + 1))
    scores = [p["score"] for p in predictions]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    for p in predictions:
        assert set(p) == {"rank", "index", "wnid", "label", "score"}
        cls = labels.imagenet()[p["index"]]
        assert (p["wnid"], p["label"]) == (cls.wnid, cls.label)


@pytest.mark.parametrize("arch", REPRESENTATIVE)
def test_builds_and_classifies_with_random_weights(cli, arch):
    run = cli("classify", CAT, "--arch", arch, "--weights", "none", "--format", "json")
    assert run.exit_code == 0, run.stderr
    doc = run.json()
    assert set(doc) == {"arch", "weights", "engine", "precision", "results"}
    assert doc["arch"] == arch and doc["weights"] == "none"
    assert [r["image"] for r in doc["results"]] == [str(CAT)]
    check_predictions(doc["results"][0]["predictions"], 5)


def test_bad_inputs_are_reported_and_do_not_stop_the_others(cli, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_text("not a jpeg")
    missing = tmp_path / "missing.jpg"
    run = cli(
        "classify",
        CAT,
        broken,
        missing,
        COFFEE,
        "-a",
        "mobilenet_0.25",
        "-w",
        "none",
        "-k",
        "3",
        "-f",
        "json",
        "--batch-size",
        "2",
    )
    assert run.exit_code == 1
    results = run.json()["results"]
    assert [r["image"] for r in results] == [str(CAT), str(broken), str(missing), str(COFFEE)]
    assert "cannot identify image file" in results[1]["error"]
    assert "no such file" in results[2]["error"]
    check_predictions(results[0]["predictions"], 3)
    check_predictions(results[3]["predictions"], 3)
    errors = [line for line in run.stderr.splitlines() if line.startswith("cnn: error:")]
    assert len(errors) == 2 and str(broken) in errors[0] and str(missing) in errors[1]
    assert "Traceback" not in run.stderr


def test_batch_size_does_not_change_scores(cli):
    args = (
        "classify",
        CAT,
        COFFEE,
        CAT,
        "-a",
        "mobilenet_v2_0.35",
        "-w",
        "none",
        "-k",
        "10",
        "-f",
        "json",
    )
    one = cli(*args, "--batch-size", "1").json()["results"]
    three = cli(*args, "--batch-size", "3").json()["results"]
    for a, b in zip(one, three, strict=True):
        assert [p["index"] for p in a["predictions"]] == [p["index"] for p in b["predictions"]]
        np.testing.assert_allclose(
            [p["score"] for p in a["predictions"]],
            [p["score"] for p in b["predictions"]],
            rtol=1e-4,
        )


def test_directory_expands_to_its_images_sorted(cli):
    run = cli("classify", SAMPLES, "-a", "mobilenet_0.25", "-w", "none", "-k", "1", "-f", "json")
    assert run.exit_code == 0
    images = [r["image"] for r in run.json()["results"]]
    assert images == [
        str(SAMPLES / n) for n in ("cat.jpg", "coffee.jpg", "grace_hopper.jpg", "rocket.jpg")
    ]


def test_csv_has_one_row_per_image_and_rank(cli, tmp_path):
    run = cli(
        "classify",
        CAT,
        COFFEE,
        tmp_path / "nope.jpg",
        "-a",
        "mobilenet_0.25",
        "-w",
        "none",
        "-k",
        "4",
        "-f",
        "csv",
    )
    rows = list(csv.DictReader(io.StringIO(run.stdout)))
    assert len(rows) == 2 * 4 + 1
    assert [r["rank"] for r in rows[:4]] == ["1", "2", "3", "4"]
    assert rows[-1]["error"] and rows[-1]["image"].endswith("nope.jpg")


def test_table_lists_rank_label_wnid_and_score(cli):
    run = cli("classify", CAT, "-a", "mobilenet_0.25", "-w", "none", "-k", "2")
    assert run.exit_code == 0
    lines = [line for line in run.stdout.splitlines() if re.match(r"\s+[12]\s", line)]
    assert len(lines) == 2
    assert re.search(r"n\d{8}\s+0\.\d{4}", lines[0])


def test_no_color_means_no_escape_codes_even_on_a_terminal(cli):
    coloured = cli("classify", CAT, "-a", "mobilenet_0.25", "-w", "none", tty=True)
    plain = cli("classify", CAT, "-a", "mobilenet_0.25", "-w", "none", tty=True, colors=False)
    assert "\x1b[" in coloured.stdout
    assert "\x1b[" not in plain.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("-a", "resnet5O"),
        ("-k", "0"),
        ("-k", "1001"),
        ("--frobnicate",),
        ("--resize", "zoom"),
        ("-f", "xml"),
    ],
)
def test_usage_errors_exit_2(cli, args):
    run = cli("classify", CAT, "-w", "none", *args)
    assert run.exit_code == 2
    assert "Traceback" not in run.stderr


def test_unknown_arch_names_suggestions(cli):
    run = cli("classify", CAT, "-a", "ResNet-5O", "-w", "none")
    assert run.exit_code == 2
    assert "did you mean" in run.stderr and "resnet50" in run.stderr


def strict_json(text: str) -> object:
    """Parse as JSON proper: Python's reader would otherwise accept `NaN` and `Infinity`."""

    def refuse(token: str) -> None:
        raise ValueError(f"{token} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def nan_weights(tmp_path_factory) -> Path:
    """MobileNet-0.25 weights whose classifier kernel is NaN, as a broken download would be."""
    from cnncli import registry
    from cnncli.loader import Weights, build

    model = build(registry.get("mobilenet_0.25"), Weights("none"))
    kernel = next(layer for layer in reversed(model.layers) if layer.weights).weights[0]
    kernel.assign(np.full(kernel.shape, np.nan, dtype="float32"))
    path = tmp_path_factory.mktemp("nan") / "nan.weights.h5"
    model.save_weights(path)
    return path


@pytest.mark.parametrize("engine", ["keras", "litert"])
def test_nan_scores_are_an_error_for_each_image_never_a_prediction(cli, nan_weights, engine):
    if engine == "litert" and not litert.available():
        pytest.skip("ai-edge-litert is not installed")
    args = ("classify", CAT, COFFEE, "-a", "mobilenet_0.25", "-w", nan_weights, "-e", engine)
    table, document, lines = cli(*args), cli(*args, "-f", "json"), cli(*args, "-f", "jsonl")
    assert table.exit_code == document.exit_code == lines.exit_code == 1
    assert "nan" not in table.stdout and "tench" not in table.stdout  # a score prints as "nan"
    assert table.stdout.count(": error: the model's scores are not finite numbers") == 2
    results = strict_json(document.stdout)["results"]
    assert results == [strict_json(line) for line in lines.stdout.splitlines()]
    assert [r["image"] for r in results] == [str(CAT), str(COFFEE)]
    assert all(set(r) == {"image", "model", "error"} and "weights" in r["error"] for r in results)
    assert document.stderr.count("not finite numbers") == 2


def test_nan_scores_in_compare_are_one_error_line_and_no_json(cli, nan_weights):
    run = cli("compare", CAT, "-a", "mobilenet_0.25", "-w", nan_weights, "-e", "keras", "-fjson")
    assert run.exit_code == 1 and run.stdout == ""
    assert run.stderr.startswith("cnn: error: ") and "not finite numbers" in run.stderr
    assert len(run.stderr.splitlines()) == 1


def test_a_nan_that_reaches_json_is_an_error_not_a_bare_token(cli, nan_weights):
    # explain --class scores the class it is given, without ranking: the NaN meets the JSON writer.
    run = cli("explain", CAT, "-a", "mobilenet_0.25", "-w", nan_weights, "-ctabby", "-fjson")
    assert run.exit_code == 1 and run.stdout == ""
    assert run.stderr.startswith("cnn: error: ") and "JSON cannot represent" in run.stderr
