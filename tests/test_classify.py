"""`cnn classify` through the real CLI: output formats, batches, bad inputs, exit codes."""

from __future__ import annotations

import csv
import io
import re

import numpy as np
import pytest

from cnncli import labels
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
        cls = labels.classes()[p["index"]]
        assert (p["wnid"], p["label"]) == (cls.wnid, cls.label)


@pytest.mark.parametrize("arch", REPRESENTATIVE)
def test_builds_and_classifies_with_random_weights(cli, arch):
    run = cli("classify", CAT, "--arch", arch, "--weights", "none", "--format", "json")
    assert run.exit_code == 0, run.stderr
    doc = run.json()
    assert set(doc) == {"arch", "weights", "engine", "results"}
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
