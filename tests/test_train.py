"""`cnn train`: class-folder discovery and its bad-input rules, training on cached features, early
stopping, the bundle and what it holds, --output rules, several architectures, and a stop signal
writing the best epoch then `--resume` going on. Tiny generated data sets of distinct colours
and MobileNet-0.25 (real ImageNet weights where ../shared is present, seeded ones otherwise)."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnncli import bundle, datasets, features, registry, training
from cnncli.choices import Resize
from cnncli.errors import UsageError
from cnncli.images import load_array
from cnncli.loader import Weights, build
from cnncli.preprocess import preprocess
from cnncli.tf_runtime import import_keras
from tests.conftest import MOBILENET_WEIGHTS, ROOT, seeded_model

ARCH = registry.get("mobilenet_0.25")
COLOURS = {"blue": (40, 60, 200), "green": (40, 170, 60), "red": (200, 40, 40)}


def write_images(folder: Path, colour: tuple[int, int, int], count: int) -> None:
    """`count` 32x32 PNG files of `colour`, each with its own brightness and pixel noise."""
    rng = np.random.default_rng(list(colour))
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        pixels = np.array(colour) * rng.uniform(0.7, 1.2) + rng.normal(0, 20, (32, 32, 3))
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"{index:03d}.png")


def colour_set(root: Path, count: int = 8, colours: dict | None = None) -> Path:
    for name, colour in (colours or COLOURS).items():
        write_images(root / name, colour, count)
    return root


@pytest.fixture(scope="module")
def base_weights(tmp_path_factory) -> Path:
    """The real ImageNet MobileNet-0.25 where ../shared is present, else a seeded random one
    (live batch-norm statistics: its features still tell colours apart)."""
    if MOBILENET_WEIGHTS.is_file():
        return MOBILENET_WEIGHTS
    path = tmp_path_factory.mktemp("weights") / "seeded.weights.h5"
    seeded_model("mobilenet_0.25", 3).save_weights(path)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, base_weights):
    """One `cnn train` run with default options but epochs, on three colours, one image
    corrupt: (DATA, DIR, the run)."""
    from tests.conftest import run_cli

    root = tmp_path_factory.mktemp("trained")
    data = colour_set(root / "data", 10)
    (data / "red" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = root / "model"
    run = run_cli(
        "train", data, "-o", out, "-a", ARCH.name, "-w", base_weights, "--epochs", 6, "-f", "json"
    )
    return data, out, run


# --- Discovery -------------------------------------------------------------------------------


def test_a_seeded_stratified_share_of_each_class_is_held_out(tmp_path):
    root = colour_set(tmp_path / "data", 10)
    dataset = datasets.discover(root, val_split=0.2, seed=0)
    assert dataset.classes == ("blue", "green", "red")
    assert dataset.counts()["val"] == {"blue": 2, "green": 2, "red": 2}
    every = {str(path) for path in root.rglob("*.png")}
    train, val = {s.path for s in dataset.train}, {s.path for s in dataset.val}
    assert train | val == every and not train & val
    assert datasets.discover(root, 0.2, 0) == dataset  # seeded: the same split again
    assert {s.path for s in datasets.discover(root, 0.2, 1).val} != val
    write_images(root / "yellow", (220, 220, 40), 10)  # another class leaves these as they were
    assert val <= {s.path for s in datasets.discover(root, 0.2, 0).val}


def test_train_val_test_folders_are_used_as_they_are(tmp_path):
    two = {"blue": COLOURS["blue"], "red": COLOURS["red"]}
    colour_set(tmp_path / "train", 6, two)
    colour_set(tmp_path / "val", 2, two)
    colour_set(tmp_path / "test", 3, {"red": COLOURS["red"]})
    dataset = datasets.discover(tmp_path)
    assert (len(dataset.train), len(dataset.val), len(dataset.test)) == (12, 4, 3)
    assert any("test: no folder for class(es) blue" in note for note in dataset.warnings)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        ("missing", "data: does not exist; give a folder"),
        ("file", "data: is not a folder; give a folder"),
        ("one class", r"1 class folder\(s\) found \(only\); a classifier needs at least two"),
        ("empty class", "notes: class 'notes' has no images"),
        ("no val", "data: no images left for validation"),
    ],
)
def test_data_that_cannot_be_trained_on_is_one_clear_error(tmp_path, cli, make, expected):
    data = tmp_path / "data"
    if make == "file":
        data.write_bytes(b"not a folder")
    elif make == "one class":
        write_images(data / "only", COLOURS["red"], 4)
    elif make == "empty class":
        colour_set(data, 3)
        (data / "notes").mkdir()
        (data / "notes" / "readme.txt").write_text("no images here")
    elif make == "no val":
        colour_set(data, 2)  # 20% of two images is none
    run = cli("train", data, "-o", tmp_path / "out", "-a", ARCH.name, "-w", "none")
    assert run.exit_code == 2
    line = run.stderr.splitlines()[-1]  # after the warnings, if any
    assert line.startswith("cnn: error: ") and re.search(expected, line)
    assert not (tmp_path / "out").exists()


def test_small_classes_and_loose_images_are_warned_about(tmp_path):
    colour_set(tmp_path, 5)
    write_images(tmp_path / "rare", (128, 128, 128), 2)
    Image.new("RGB", (8, 8)).save(tmp_path / "loose.png")
    dataset = datasets.discover(tmp_path, val_split=0.2)
    rare = dataset.classes.index("rare")
    assert [s.label for s in dataset.train].count(rare) == 2
    assert rare not in {s.label for s in dataset.val}
    assert any("2 image(s) are too few to hold out 20%" in w for w in dataset.warnings)
    assert any("skipped 1 image(s) outside any class folder" in w for w in dataset.warnings)


def test_class_names_keep_spaces_and_any_script(tmp_path):
    names = {"gray cat": (90, 90, 90), "café": (120, 80, 40), "猫": (250, 250, 250)}
    assert datasets.discover(colour_set(tmp_path, 5, names)).classes == ("café", "gray cat", "猫")


def test_a_class_name_that_is_not_utf8_is_refused(tmp_path):
    colour_set(tmp_path, 5)
    bad = os.path.join(os.fsencode(tmp_path), b"caf\xe9")
    os.mkdir(bad)
    write_images(Path(os.fsdecode(bad)), (1, 2, 3), 3)
    with pytest.raises(UsageError, match=r"caf\\xe9: the folder's name is not valid UTF-8"):
        datasets.discover(tmp_path)


# --- The bundle a run writes -------------------------------------------------------------------


def test_train_writes_a_complete_bundle(trained):
    _, out, run = trained
    assert run.exit_code == 0, run.stderr
    assert {p.name for p in out.iterdir()} == {
        "model.keras",
        "cnn-model.json",
        "history.csv",
        "curves.png",
        "confusion.png",
        "split.json",
    }
    loaded = bundle.load(out)
    meta = loaded.metadata
    assert loaded.classes == ("blue", "green", "red") and loaded.resize is Resize.crop
    assert meta["base_weights"]["sha256"] and meta["options"]["augment"] is True
    assert meta["data"]["counts"]["val"] == {"blue": 2, "green": 2, "red": 2}
    assert {"keras", "numpy", "cnncli"} <= set(meta["versions"])
    history = list(csv.DictReader((out / "history.csv").open()))
    assert len(history) == len(meta["training"]["history"]) >= 1
    assert history[0]["phase"] == "head"
    split = json.loads((out / "split.json").read_text())
    assert len(split["train"]) + len(split["val"]) == 31  # the corrupt file is in the split
    for name in ("curves.png", "confusion.png"):
        assert Image.open(out / name).size[0] > 300
    [row] = run.json()["models"]
    assert row["val_top1"] == meta["training"]["val_top1"] >= 0.8  # chance is 1/3
    assert row["params"] == loaded.record.params and row["file_bytes"] > 0


def test_a_corrupt_image_is_one_line_and_skipped(trained):
    data, out, run = trained
    broken = str(data / "red" / "broken.png")
    lines = [line for line in run.stderr.splitlines() if broken in line]
    assert len(lines) == 1 and lines[0].startswith(f"cnn: error: {broken}: ")
    assert list(bundle.load(out).metadata["training"]["skipped"]) == [broken]


def test_the_served_model_reads_images_as_classify_and_keeps_the_base_layers(trained):
    """No train/serve skew: the saved model, fed each val file decoded as `classify` decodes
    it, scores the val top-1 that training recorded; and it is flat, the base's layers under
    their registry names, a Dense softmax last (what Grad-CAM needs)."""
    data, out, _ = trained
    loaded = bundle.load(out)
    model = loaded.model()
    split = json.loads((out / "split.json").read_text())
    paths = [data / p for p in split["val"]]
    pixels = np.stack([load_array(p, ARCH.input_size, Resize.crop) for p in paths])
    predicted = np.asarray(model(preprocess(pixels, ARCH.preprocessing))).argmax(axis=1)
    truth = [loaded.classes.index(Path(p).parent.name) for p in split["val"]]
    accuracy = float(np.mean(predicted == truth))
    assert accuracy == pytest.approx(loaded.metadata["training"]["val_top1"])
    names = {layer.name for layer in model.layers}
    assert {"conv1", "conv_pw_13_relu"} <= names
    assert model.layers[-1].activation.__name__ == "softmax"


# --- --output ------------------------------------------------------------------------------------


def test_an_output_folder_that_is_not_this_runs_bundle_is_refused_unless_force(
    tmp_path, cli, trained, base_weights
):
    data, _, _ = trained
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("someone's work")
    args = ("train", data, "-o", out, "-a", ARCH.name, "-w", base_weights, "--epochs", 1)
    run = cli(*args)
    assert run.exit_code == 2
    assert "is not a model `cnn train` wrote; choose a new folder, or add --force" in run.stderr
    assert os.listdir(out) == ["notes.txt"]
    inside = cli("train", data, "-o", data / "model", "-a", ARCH.name, "-w", "none")
    assert inside.exit_code == 2 and "is inside DATA" in inside.stderr
    forced = cli(*args, "--force", "--no-augment")
    assert forced.exit_code == 0, forced.stderr
    assert (out / "notes.txt").read_text() == "someone's work"
    assert bundle.load(out).metadata["training"]["status"] == "complete"


# --- Training itself -----------------------------------------------------------------------------


def test_early_stopping_ends_with_the_best_epoch(tmp_path, base_weights):
    dataset = datasets.discover(colour_set(tmp_path, 8), val_split=0.25)
    model = training.transfer_model(ARCH, Weights("file", base_weights), 3)
    # A learning rate this large overshoots: val loss rises after its first epochs.
    options = training.Options(epochs=30, augment=False, learning_rate=30.0, patience=2)
    trainer = training.Trainer(training.TransferModel.of(ARCH, model), dataset, options, True)
    trainer.run()
    history = trainer.progress.history
    best = min(history, key=lambda e: e.val_loss)
    assert trainer.progress.best == ("head", best.epoch)
    assert len(history) == best.epoch + 2 < 30
    val = trainer.cached[1]
    loss = trainer.tm.head.evaluate(val.x[:, 0], val.y, verbose=0, return_dict=True)["loss"]
    assert loss == pytest.approx(best.val_loss, rel=1e-4)


def test_cached_and_recomputed_features_train_the_same_head(tmp_path, base_weights):
    dataset = datasets.discover(colour_set(tmp_path, 6), val_split=0.25)
    losses = []
    for cache in (True, False):
        import_keras().utils.set_random_seed(0)  # the same initial head and dropout draws
        model = training.transfer_model(ARCH, Weights("file", base_weights), 3)
        options = training.Options(epochs=2, augment=False, cache=cache, learning_rate=1e-3)
        trainer = training.Trainer(training.TransferModel.of(ARCH, model), dataset, options, True)
        trainer.run()
        assert (trainer.cached is not None) is cache
        losses.append([e.val_loss for e in trainer.progress.history])
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-4)


def test_features_spill_to_a_file_and_read_back_the_same(tmp_path):
    dataset = datasets.discover(colour_set(tmp_path / "data", 3), val_split=0.34)

    def forward(pixels: np.ndarray) -> np.ndarray:
        return pixels.mean(axis=(1, 2))

    memory, spilled = (
        features.extract(dataset.train, ARCH, Resize.crop, 4, forward, None, 1, spill_bytes=size)
        for size in (features.SPILL_BYTES, 0)
    )
    assert isinstance(spilled.x, np.memmap) and not isinstance(memory.x, np.memmap)
    np.testing.assert_array_equal(spilled.x, memory.x)
    assert os.listdir(tmp_path) == ["data"]  # the spill file is unlinked from the start


def test_fine_tuning_trains_the_top_and_keeps_batchnorm_statistics(tmp_path, base_weights):
    dataset = datasets.discover(colour_set(tmp_path, 4), val_split=0.25)
    weights = Weights("file", base_weights)
    options = training.Options(epochs=1, fine_tune=1, fine_tune_fraction=0.1, augment=False)
    model = training.transfer_model(ARCH, weights, 3)
    trainer = training.Trainer(training.TransferModel.of(ARCH, model), dataset, options, True)
    trainer.run()
    assert [e.phase for e in trainer.progress.history] == ["head", "fine-tune"]
    before = build(ARCH, weights)

    def changed(name: str) -> bool:
        old, new = before.get_layer(name).get_weights(), model.get_layer(name).get_weights()
        return any(not np.array_equal(a, b) for a, b in zip(old, new, strict=True))

    assert changed("conv_pw_13")  # the top of the base learned
    assert not changed("conv1") and not changed("conv_pw_5")  # the rest stayed frozen
    assert not changed("conv_pw_13_bn")  # ImageNet statistics kept (inference mode)


# --- Several architectures, and a run stopped then resumed ------------------------------------


def test_several_architectures_each_get_a_bundle_and_a_leaderboard_row(
    tmp_path, cli, trained, base_weights
):
    data, _, _ = trained
    other = "mobilenet_v3_small_minimalistic"
    seeded = tmp_path / "seeded.weights.h5"
    seeded_model(other, 1).save_weights(seeded)
    out, archs, weights = tmp_path / "board", f"{ARCH.name},{other}", f"{base_weights},{seeded}"
    run = cli("train", data, "-o", out, "-a", archs, "-w", weights, "--epochs", 2, "-f", "csv")
    assert run.exit_code == 0, run.stderr
    rows = list(csv.DictReader(run.stdout.splitlines()))
    assert sorted(r["arch"] for r in rows) == sorted(archs.split(","))
    for row in rows:
        assert bundle.load(out / row["arch"]).metadata["arch"] == row["arch"]
        assert float(row["ms_per_image"]) > 0 and int(row["params"]) > 0
    again = cli("train", data, "-o", out, "-a", archs, "-w", weights, "--resume")
    assert again.exit_code == 0, again.stderr  # both finished: nothing to train, same board
    assert "building" not in again.stderr and "val top-1" in again.stdout


def test_a_stop_signal_writes_the_best_epoch_and_resume_goes_on(
    tmp_path, cli, trained, base_weights
):
    data, _, _ = trained
    out = tmp_path / "model"
    args = [str(data), "-o", str(out), "-a", ARCH.name, "-w", str(base_weights), "--no-augment"]
    args += ["--patience", "500"]
    command = [sys.executable, "-m", "cnncli", "train", *args, "--epochs", "500"]
    process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        for line in process.stderr:  # type: ignore[union-attr]
            if "head epoch 3:" in line:
                process.send_signal(signal.SIGTERM)
                break
        rest = process.communicate(timeout=120)[1]
    finally:
        process.kill()
    assert process.returncode == 143, rest
    assert "interrupted: the best epoch so far written to" in rest
    stopped = bundle.load(out).metadata["training"]
    assert stopped["status"] == "interrupted" and len(stopped["history"]) >= 3
    assert (out / "resume.json").is_file()
    done = len(stopped["history"])
    resumed = cli("train", *args, "--epochs", done + 2, "--resume")
    assert resumed.exit_code == 0, resumed.stderr
    assert f"resuming after epoch {done}" in resumed.stderr
    finished = bundle.load(out).metadata["training"]
    assert finished["status"] == "complete"
    assert [e["epoch"] for e in finished["history"]] == list(range(1, done + 3))
    assert finished["history"][:done] == stopped["history"]
    assert not (out / "resume.json").exists() and not (out / "resume.npz").exists()


# --- The bundle in use ---------------------------------------------------------------------------


def test_what_train_writes_classify_evaluate_and_explain_run(trained, tmp_path):
    """Both halves of the capability meet: the folder `cnn train` wrote runs wherever an
    architecture does, on LiteRT (converted and cached under its content), and scores on its
    val images the top-1 training recorded."""
    from tests.conftest import run_cli

    data, out, _ = trained
    val = tmp_path / "val"
    for name in json.loads((out / "split.json").read_text())["val"]:
        (val / Path(name).parent.name).mkdir(parents=True, exist_ok=True)
        (val / name).write_bytes((data / name).read_bytes())
    cache = tmp_path / "cache"
    measured = run_cli("evaluate", val, "-m", out, "-e", "litert", "-f", "json", tmp=cache)
    assert measured.exit_code == 0, measured.stderr
    recorded = bundle.load(out).metadata["training"]["val_top1"]
    assert measured.json()["top1"] == pytest.approx(recorded, abs=1 / 6)  # one of 6 images
    photo = next(val.glob("red/*.png"))
    runs = [
        run_cli("classify", photo, "-m", out, "-e", engine, "-f", "json", tmp=cache)
        for engine in ("litert", "keras")
    ]
    compiled, reference = (r.json()["results"][0]["predictions"] for r in runs)
    assert {p["label"] for p in compiled} == {"blue", "green", "red"}  # --top 5 shows all 3
    assert all(p["wnid"] is None for p in compiled)
    assert [p["label"] for p in compiled] == [p["label"] for p in reference]
    scores = [[p["score"] for p in predictions] for predictions in (compiled, reference)]
    np.testing.assert_allclose(*scores, atol=1e-4)
    overlay = tmp_path / "overlay.png"
    explained = run_cli("explain", photo, "-m", out, "-o", overlay, tmp=cache)
    assert explained.exit_code == 0, explained.stderr
    assert Image.open(overlay).size[0] > 0


# --- From scratch, and a trained model trained further -----------------------------------------


@pytest.fixture(scope="module")
def scratch(tmp_path_factory, trained):
    """One `cnn train --weights none` run of one epoch on the colours: (DIR, the run)."""
    from tests.conftest import run_cli

    data, _, _ = trained
    out = tmp_path_factory.mktemp("scratch") / "model"
    args = ("-o", out, "-a", ARCH.name, "-w", "none", "--no-augment", "--epochs", 1)
    return out, run_cli("train", data, *args)


def test_weights_none_trains_the_whole_network_from_scratch(scratch):
    out, run = scratch
    assert run.exit_code == 0, run.stderr
    loaded = bundle.load(out)
    meta = loaded.metadata
    assert meta["base_weights"]["source"] == "none" and "parent" not in meta
    assert [e["phase"] for e in meta["training"]["history"]] == ["scratch"]
    before, after = build(ARCH, Weights("none")), loaded.model()  # the same seeded start
    for name in ("conv1", "conv_pw_5", "conv_pw_13", "conv1_bn"):  # bottom to top, BN too
        old, new = before.get_layer(name).get_weights(), after.get_layer(name).get_weights()
        assert any(not np.array_equal(a, b) for a, b in zip(old, new, strict=True)), name


@pytest.mark.heavy
def test_a_model_from_scratch_is_trained_further_as_a_whole(tmp_path, cli, trained, scratch):
    """Heavy: a second whole-network training (its graph alone takes ~15 s to build)."""
    data, _, _ = trained
    out, _ = scratch
    more = tmp_path / "more"
    further = cli("train", data, "-o", more, "-a", out, "--epochs", 1, "--no-augment")
    assert further.exit_code == 0, further.stderr
    history = bundle.load(more).metadata["training"]["history"]
    assert [e["phase"] for e in history] == ["scratch"]


def test_a_trained_model_is_trained_further(tmp_path, cli, trained):
    """`--arch BUNDLE`: on the same classes the whole model goes on training (its head moves
    a little from where it was, not from a new start); on other classes its base is kept under
    a new head. The new bundle names its parent by content; the parent is never written."""
    data, parent, _ = trained
    digest = bundle.load(parent).digest
    old = bundle.load(parent).model()
    more = tmp_path / "more"
    run = cli("train", data, "-o", more, "-a", parent, "--epochs", 2, "--no-augment")
    assert run.exit_code == 0, run.stderr
    meta = bundle.load(more).metadata
    assert meta["arch"] == ARCH.name and meta["classes"] == ["blue", "green", "red"]
    assert meta["parent"] == {"path": str(parent.resolve()), "sha256": digest, "head": "kept"}
    assert meta["base_weights"] == bundle.load(parent).metadata["base_weights"]
    assert [e["phase"] for e in meta["training"]["history"]] == ["head", "head"]
    new = bundle.load(more).model()
    kernel = [m.get_layer(training.CLASSES).get_weights()[0] for m in (old, new)]
    assert not np.array_equal(*kernel)  # it trained,
    assert np.abs(kernel[1] - kernel[0]).max() < 0.05  # by two Adam steps of 1e-2 at most

    other = colour_set(tmp_path / "other", 5, {"purple": (150, 40, 200), "yellow": (220, 220, 40)})
    run = cli("train", other, "-o", tmp_path / "new", "-a", parent, "--epochs", 1, "--no-augment")
    assert run.exit_code == 0, run.stderr
    renewed = bundle.load(tmp_path / "new")
    assert renewed.classes == ("purple", "yellow") and renewed.metadata["parent"]["head"] == "new"
    top = [m.get_layer("conv_pw_13").get_weights() for m in (old, renewed.model())]
    assert all(np.array_equal(a, b) for a, b in zip(*top, strict=True))  # the base is kept
    assert bundle.load(parent).digest == digest


def test_what_cannot_be_trained_further_is_one_clear_error(tmp_path, cli, trained):
    data, parent, _ = trained
    shrunk = tmp_path / "shrunk"
    shrunk.mkdir()
    for name in (bundle.MODEL, bundle.METADATA):
        (shrunk / name).write_bytes((parent / name).read_bytes())
    meta = json.loads((shrunk / bundle.METADATA).read_text())
    (shrunk / bundle.METADATA).write_text(json.dumps({**meta, "input_size": 160}))
    cases = [
        (("-a", parent, "-w", "none"), "--weights goes with architectures, not with --arch"),
        (("-a", parent, "-o", parent), "is the model --arch trains further"),
        (("-a", tmp_path / "nothing"), r"--arch \S+nothing: not a folder"),
        (("-a", shrunk), "its model takes 224x224 pictures but its metadata says 160x160"),
    ]
    digest = bundle.load(parent).digest
    for options, expected in cases:
        run = cli("train", data, "-o", tmp_path / "out", *options, "--epochs", 1)
        assert run.exit_code == 2, run.stderr
        line = run.stderr.splitlines()[-1]
        assert line.startswith("cnn: error: ") and re.search(expected, line), line
    assert not (tmp_path / "out").exists() and bundle.load(parent).digest == digest
