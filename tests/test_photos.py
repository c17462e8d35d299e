"""Real ImageNet weights end to end: MobileNet-0.25 over labelled photos, both resize modes.

With a correct pipeline the smallest MobileNet puts an accepted label in its top 5 for 12 of the
13 photos in ../shared/photos; a wrong preprocessing mode gets none, a missing EXIF transpose
loses the dog.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import MOBILENET_WEIGHTS, PHOTOS, SAMPLES, needs_shared

pytestmark = needs_shared


def top5_hits(cli, images: list[str], resize: str) -> dict[str, list[int]]:
    run = cli(
        "classify",
        *images,
        "-a",
        "mobilenet_0.25",
        "-w",
        MOBILENET_WEIGHTS,
        "--resize",
        resize,
        "-f",
        "json",
        "--batch-size",
        "8",
    )
    assert run.exit_code == 0, run.stderr
    return {r["image"]: [p["index"] for p in r["predictions"]] for r in run.json()["results"]}


@pytest.mark.parametrize("resize", ["crop", "stretch"])
def test_shared_photos_reach_the_accepted_labels(cli, resize):
    expected = json.loads((PHOTOS / "expected.json").read_text())
    found = top5_hits(cli, [str(PHOTOS / name) for name in expected], resize)
    hits = {
        name
        for name, accepted in expected.items()
        if set(found[str(PHOTOS / name)]) & set(accepted)
    }
    print(f"{resize}: {len(hits)}/{len(expected)} photos with an accepted label in the top 5")
    assert len(hits) >= 11, sorted(set(expected) - hits)
    assert "dog_exif_orientation6.jpg" in hits


def test_sample_images_cat_and_coffee(cli):
    found = top5_hits(cli, [str(SAMPLES / "cat.jpg"), str(SAMPLES / "coffee.jpg")], "crop")
    assert found[str(SAMPLES / "cat.jpg")][0] in (281, 282, 285)  # tabby, tiger cat, Egyptian cat
    assert found[str(SAMPLES / "coffee.jpg")][0] in (967, 968, 504)  # espresso, cup, coffee mug
