"""`cnn compare`: architectures side by side, each at its own size, and the majority vote."""

from __future__ import annotations

import pytest

from cnncli.comparison import ModelRun, _with_majority
from cnncli.labels import imagenet
from tests.conftest import MOBILENET_WEIGHTS, SAMPLES, needs_shared

CAT = SAMPLES / "cat.jpg"


def run_with_top(arch: str, index: int) -> ModelRun:
    import numpy as np

    scores = np.zeros(1000)
    scores[index] = 1.0
    return ModelRun(arch, "none", "keras", "fp32", tuple(imagenet().decode(scores, 1)), 1, 1.0)


def test_majority_marks_the_agreeing_models():
    result = _with_majority(
        "x", [run_with_top("a", 281), run_with_top("b", 281), run_with_top("c", 5)]
    )
    assert result.majority.index == 281
    assert [r.agrees_with_majority for r in result.runs] == [True, True, False]


def test_a_tie_has_no_majority():
    result = _with_majority("x", [run_with_top("a", 281), run_with_top("b", 5)])
    assert result.majority is None
    assert not any(r.agrees_with_majority for r in result.runs)


def test_compare_json_has_a_model_per_arch_at_its_own_size(cli):
    run = cli(
        "compare",
        CAT,
        "--arch",
        "mobilenet_0.25,inception_v3,resnet18",
        "--weights",
        "none",
        "--top",
        "3",
        "-f",
        "json",
    )
    assert run.exit_code == 0, run.stderr
    doc = run.json()
    assert doc["image"] == str(CAT)
    assert [m["arch"] for m in doc["models"]] == ["mobilenet_0.25", "inception_v3", "resnet18"]
    for model in doc["models"]:
        assert {"arch", "predictions", "params", "ms"} <= set(model)
        assert [p["rank"] for p in model["predictions"]] == [1, 2, 3]
        assert model["ms"] > 0
    params = {m["arch"]: m["params"] for m in doc["models"]}
    assert params == {"mobilenet_0.25": 475_544, "inception_v3": 23_851_784, "resnet18": 11_699_112}


@needs_shared
def test_real_weights_agree_and_table_shows_rows(cli):
    w = str(MOBILENET_WEIGHTS)
    run = cli("compare", CAT, "-a", "mobilenet_0.25,mobilenet_0.25", "-w", f"{w},{w}", "-k", "3")
    assert run.exit_code == 0, run.stderr
    assert "majority top-1: Egyptian_cat" in run.stdout
    for row in ("params", "ms", "agrees with majority"):
        assert any(line.strip().startswith(row) for line in run.stdout.splitlines())


@pytest.mark.parametrize("weights", ["none,none,none", "bogus"])
def test_weights_list_must_fit_the_archs(cli, weights):
    run = cli("compare", CAT, "-a", "mobilenet_0.25,resnet18", "-w", weights)
    assert run.exit_code == 2


@pytest.mark.parametrize(("option", "value"), [("-a", ",,,"), ("-a", " "), ("-w", ", ,")])
def test_a_comma_list_naming_nothing_is_a_usage_error(cli, option, value):
    run = cli("compare", CAT, "-a", "mobilenet_0.25", option, value)
    assert run.exit_code == 2
    [line] = run.stderr.splitlines()
    assert line.startswith("cnn: error: --") and "names nothing" in line


def test_blank_items_of_a_comma_list_are_ignored(cli):
    run = cli("compare", CAT, "-a", "mobilenet_0.25,,", "-w", "none,", "-e", "keras", "-f", "json")
    assert run.exit_code == 0, run.stderr
    assert [m["arch"] for m in run.json()["models"]] == ["mobilenet_0.25"]


def test_unreadable_photo_is_one_line(cli, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG not really")
    run = cli("compare", bad, "-a", "mobilenet_0.25", "-w", "none")
    assert run.exit_code == 1
    assert str(bad) in run.stderr and "Traceback" not in run.stderr


@needs_shared
def test_one_photo_has_one_score_in_classify_compare_and_explain(cli, tmp_path):
    """Classify decoded large JPEGs at reduced scale, compare and explain at full size, so the
    same photo and weights scored differently. Every command now decodes through one path."""
    from PIL import Image

    photo = tmp_path / "large_cat.jpg"
    with Image.open(CAT) as cat:
        cat.convert("RGB").resize((2400, 1800), Image.BICUBIC).save(photo, quality=92)
    model = ("-a", "mobilenet_0.25", "-w", MOBILENET_WEIGHTS, "-k", "1", "-f", "json")
    classified = cli("classify", photo, *model, "-e", "keras").json()["results"][0]
    compared = cli("compare", photo, *model, "-e", "keras").json()["models"][0]
    explained = cli("explain", photo, *model).json()["class"]
    [top1] = classified["predictions"]
    assert compared["predictions"][0]["index"] == explained["index"] == top1["index"]
    assert compared["predictions"][0]["score"] == pytest.approx(top1["score"], rel=1e-6)
    assert explained["score"] == pytest.approx(top1["score"], rel=1e-5)
