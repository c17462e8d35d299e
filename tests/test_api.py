"""The Python API: one call each, and the same records as the command line's JSON."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import cnncli
from cnncli.env import Environment
from cnncli.errors import UsageError
from tests.conftest import MOBILENET_WEIGHTS, SAMPLES, SESSION_CACHE, needs_shared

CAT, COFFEE = SAMPLES / "cat.jpg", SAMPLES / "coffee.jpg"


def quiet() -> Environment:
    """An environment whose messages the test can read, sharing the session's model cache."""
    return Environment(stdout=io.StringIO(), stderr=io.StringIO(), cache_dir=SESSION_CACHE)


@needs_shared
@pytest.mark.parametrize("engine", ["keras", "litert"])
def test_classify_gives_the_records_of_the_cli(cli, engine):
    model = cnncli.load("mobilenet_0.25", MOBILENET_WEIGHTS, engine=engine, env=quiet())
    assert (model.arch.name, model.engine) == ("mobilenet_0.25", engine)
    results = model.classify([CAT, str(COFFEE)], top=3)
    args = ("-a", "mobilenet_0.25", "-w", MOBILENET_WEIGHTS, "-e", engine, "-k", "3", "-f", "json")
    run = cli("classify", CAT, COFFEE, *args)
    assert [r.as_dict() for r in results] == run.json()["results"]
    assert results[0].predictions[0].label == "Egyptian_cat"


@needs_shared
def test_arrays_and_pillow_images_score_as_their_files_do():
    model = cnncli.load("mobilenet_0.25", MOBILENET_WEIGHTS, engine="keras", env=quiet())
    with Image.open(CAT) as photo:
        photo = photo.convert("RGB")
    array = np.asarray(photo)
    from_file, from_array, from_image = model.classify([CAT, array, photo], top=2)
    assert (from_array.image, from_image.image) == ("array[1]", "array[2]")
    for result in (from_array, from_image):
        assert [p.index for p in result.predictions] == [p.index for p in from_file.predictions]
        assert result.predictions[0].score == pytest.approx(from_file.predictions[0].score, 1e-6)


def test_one_path_is_one_image_and_a_bad_one_is_an_error_result(tmp_path):
    model = cnncli.load("mobilenet_0.25", "none", engine="keras", env=quiet())
    assert len(model.classify(CAT)) == 1
    broken = tmp_path / "broken.jpg"
    broken.write_text("not a photo")
    good, bad = model.classify([CAT, broken])
    assert good.error is None and "cannot identify image" in bad.error
    assert "random weights" in model.env.stderr.getvalue()


def test_summary_and_models_are_the_registry_measured():
    anatomy = cnncli.summary("resnet18")
    assert (
        anatomy.params_total
        == 11_699_112
        == next(arch.params for arch in cnncli.models() if arch.name == "resnet18")
    )
    assert len(cnncli.models()) == 52


def test_compare_and_explain_take_names_and_weights():
    env = quiet()
    comparison = cnncli.compare(CAT, ["mobilenet_0.25", "resnet18"], "none", "keras", 2, env=env)
    assert [run.arch for run in comparison.runs] == ["mobilenet_0.25", "resnet18"]
    assert {run.weights for run in comparison.runs} == {"none"}
    [explanation] = cnncli.explain(CAT, "mobilenet_0.25", "none", classes=["tabby"], env=env)
    assert explanation.target.label == "tabby" and explanation.heat.shape == (7, 7)
    assert explanation.overlay().size == Image.open(CAT).size


def test_weights_for_each_arch_must_match_in_number():
    with pytest.raises(UsageError, match="2 sources for 3 archs"):
        cnncli.compare(CAT, ["mobilenet_0.25"] * 3, ["none", "none"], env=quiet())
