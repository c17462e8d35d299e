"""Streaming a photo library: bounded look-ahead, jsonl and csv as they go, --output, --resume
with torn-line repair, bad files that never stop the run, and real interrupts of a real process.

The model is a seeded MobileNet-0.25 on the compiled engine, converted once into the session
cache; the photos are a few hundred generated JPEGs.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cnncli import litert, pipeline, registry
from cnncli.choices import Engine, Resize
from cnncli.classify import CSV_HEADER
from cnncli.cli import app
from cnncli.engines import Classifier, open_classifier
from cnncli.env import Environment
from cnncli.inputs import Entry, Inputs
from cnncli.loader import Weights
from cnncli.networks import RegistryNetwork
from tests.conftest import ROOT, SAMPLES, Run, run_cli, seeded_model

pytestmark = pytest.mark.skipif(not litert.available(), reason="ai-edge-litert is not installed")

ARCH = "mobilenet_0.25"


def write_jpegs(folder: Path, count: int, size: tuple[int, int] = (160, 120)) -> list[Path]:
    """`count` distinct JPEGs (colour blocks plus noise) named in discovery order."""
    rng = np.random.default_rng(count)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        blocks = rng.integers(0, 256, (3, 4, 3)).astype(np.float32)
        pixels = np.kron(blocks, np.ones((size[1] // 3 + 1, size[0] // 4 + 1, 1)))
        noisy = pixels[: size[1], : size[0]] + rng.normal(0, 8, (size[1], size[0], 3))
        path = folder / f"img_{i:04d}.jpg"
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(path, quality=85)
        paths.append(path)
    return paths


@dataclass(frozen=True)
class Model:
    """Seeded weights and the compiled-model cache holding their LiteRT conversion."""

    weights: Path
    cache: Path

    def args(self, *args: object) -> list[object]:
        return ["classify", *args, "-a", ARCH, "-w", self.weights, "-e", "litert", "-k", "3"]

    def run(self, *args: object) -> Run:
        """`cnn classify ARGS` in-process (the `cli` fixture's runner)."""
        return run_cli(*self.args(*args), tmp=self.cache)

    def env(self) -> dict[str, str]:
        return {**os.environ, "CNN_CACHE_DIR": str(self.cache)}

    def process(self, *args: object, stdin: str | None = None) -> subprocess.CompletedProcess:
        """`cnn classify ARGS` as a fresh process."""
        command = [sys.executable, "-m", "cnncli", *map(str, self.args(*args))]
        return subprocess.run(
            command,
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env(),
            cwd=ROOT,
            timeout=300,
        )

    def classifier(self) -> Classifier:
        network = RegistryNetwork(registry.get(ARCH), Weights("file", self.weights))
        return open_classifier(network, Engine.litert, Environment(cache_dir=self.cache))


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Model:
    """Converted once here, so every run in-process or in a subprocess loads it from the cache."""
    folder = tmp_path_factory.mktemp("stream")
    seeded_model(ARCH, 11).save_weights(folder / "mobilenet.weights.h5")
    model = Model(folder / "mobilenet.weights.h5", folder / "cache")
    model.classifier()
    return model


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    """Forty good JPEGs in two folders (nested for --recursive)."""
    root = tmp_path_factory.mktemp("library")
    return write_jpegs(root / "a", 24) + write_jpegs(root / "a" / "b", 16)


def lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_stream_reads_the_inputs_only_a_few_batches_ahead(model, photos):
    pulled = []

    def entries():
        for path in photos:
            pulled.append(path)
            yield Entry(str(path))

    batches = pipeline.stream(model.classifier(), entries(), 3, Resize.crop, 4)
    first = next(batches)
    assert len(pulled) == 4 * (pipeline.LOOKAHEAD + 1)  # memory is a few batches, not the library
    images = [r.image for batch in [first, *batches] for r in batch]
    assert images == [str(p) for p in photos]
    assert len(pulled) == len(photos)


def test_a_file_that_vanishes_after_listing_is_an_error_in_place(model, tmp_path):
    paths = write_jpegs(tmp_path, 5)
    entries = list(Inputs((str(tmp_path),)).entries())
    paths[2].unlink()
    results = pipeline.classify_entries(model.classifier(), entries, 3, Resize.crop, 2)
    assert [r.error for r in results] == [None, None, "no such file", None, None]


def test_jsonl_holds_the_json_results_one_per_line(model, photos, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"")
    args = (photos[0].parent, broken, "-r", "--batch-size", "7")
    document, streamed = model.run(*args, "-f", "json"), model.run(*args, "-f", "jsonl")
    assert document.exit_code == streamed.exit_code == 1
    lines = [json.loads(line) for line in streamed.stdout.splitlines()]
    assert lines == document.json()["results"]
    assert len(lines) == len(photos) + 1 and "cannot identify" in lines[-1]["error"]
    assert streamed.stderr.splitlines()[-1].startswith(f"{len(photos)} classified, 1 failed in ")
    assert document.stderr.splitlines() == [f"cnn: error: {broken}: {lines[-1]['error']}"]


def test_csv_output_file_has_one_header_and_rows_in_input_order(model, photos, tmp_path):
    out, missing = tmp_path / "out.csv", tmp_path / "missing.jpg"
    args = (photos[0], missing, photos[1], "-f", "csv", "-o", out)
    run = model.run(*args)
    assert run.exit_code == 1 and run.stdout == ""
    rows = list(csv.reader(io.StringIO(out.read_text())))
    assert rows[0] == list(CSV_HEADER)
    assert [r[0] for r in rows[1:]] == [str(photos[0])] * 3 + [str(missing)] + [str(photos[1])] * 3
    again = model.run(*args, "--resume")
    # CSV spreads an image over rows: the last one is redone, in case a crash cut it short;
    # the image that failed is tried again (and fails again), its old error row gone.
    assert again.exit_code == 1 and "1 classified, 1 failed" in again.stderr
    assert list(csv.reader(io.StringIO(out.read_text()))) == rows


def by_image(lines: list[str]) -> list[dict]:
    return sorted((json.loads(line) for line in lines), key=lambda r: r["image"])


def test_resume_skips_what_the_file_holds_and_appends_the_rest(model, photos, tmp_path):
    out = tmp_path / "out.jsonl"
    args = (photos[0].parent, "-r", "-f", "jsonl", "-o", out)
    assert model.run(*args).exit_code == 0
    complete = out.read_text().splitlines(keepends=True)
    kept = "".join(complete[:15])
    out.write_text(kept + complete[15][:30])  # and a line torn by a crash
    run = model.run(*args, "--resume")
    assert run.exit_code == 0, run.stderr
    assert f"{len(photos) - 15} classified, 0 failed" in run.stderr
    assert run.stderr.rstrip().endswith(f"; 15 already in {out}")
    assert out.read_text().startswith(kept)
    assert by_image(out.read_text().splitlines()) == by_image(complete)


def test_resume_csv_redoes_an_image_whose_rows_a_crash_cut_short(model, photos, tmp_path):
    out = tmp_path / "out.csv"
    args = (*photos[:4], "-f", "csv", "-o", out)
    assert model.run(*args).exit_code == 0
    complete = out.read_text()
    lines = complete.splitlines(keepends=True)
    out.write_text("".join(lines[:8]) + lines[8][:10])  # image 3 has 1 of 3 rows, then a tear
    assert model.run(*args, "--resume").exit_code == 0
    assert out.read_text() == complete


def test_resume_refuses_a_file_it_did_not_write(model, photos, tmp_path):
    out = tmp_path / "notes.jsonl"
    out.write_text("my notes\n")
    run = model.run(photos[0], "-f", "jsonl", "-o", out, "--resume")
    assert run.exit_code == 1 and "refusing to append" in run.stderr
    assert out.read_text() == "my notes\n"


@pytest.mark.parametrize("args", [("-f", "json", "-o", "x.json"), ("-f", "jsonl")])
def test_resume_needs_an_output_file_and_a_streamed_format(model, photos, args):
    run = model.run(photos[0], *args, "--resume")
    assert run.exit_code == 2 and "--resume needs --output FILE" in run.stderr


def test_bad_files_are_reported_and_never_stop_the_run(model, tmp_path):
    folder = tmp_path / "mixed"
    good = write_jpegs(folder, 3)
    (folder / "zero.jpg").write_bytes(b"")
    data = good[0].read_bytes()
    (folder / "cut.jpg").write_bytes(data[: len(data) // 2])
    (folder / "notes.txt").write_text("not a photo")
    Image.new("1", (10_000, 9_000)).save(folder / "bomb.png")
    Image.open(SAMPLES / "rocket.jpg").resize((4000, 3000)).save(folder / "large.jpg")
    run = model.run(folder, "-f", "jsonl", "-v", "--batch-size", "2")
    assert run.exit_code == 1
    errors = {r["image"]: r.get("error") for r in map(json.loads, run.stdout.splitlines())}
    assert "decompression bomb" in errors.pop(str(folder / "bomb.png"))
    assert "truncated" in errors.pop(str(folder / "cut.jpg"))
    assert "cannot identify" in errors.pop(str(folder / "zero.jpg"))
    assert errors == {str(p): None for p in [*good, folder / "large.jpg"]}
    assert f"cnn: note: skipped {folder / 'notes.txt'}: not an image file" in run.stderr
    assert sum(line.startswith("cnn: error: ") for line in run.stderr.splitlines()) == 3
    assert "4 classified, 3 failed" in run.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_an_unreadable_file_is_an_error_in_place(model, tmp_path):
    paths = write_jpegs(tmp_path, 2)
    paths[0].chmod(0)
    run = model.run(tmp_path, "-f", "jsonl")
    assert run.exit_code == 1
    assert "permission denied" in json.loads(run.stdout.splitlines()[0])["error"]


def test_pipes_sockets_and_devices_are_reported_never_opened(model, tmp_path):
    """A named pipe called b.jpg once hung the run forever, waiting for a writer."""
    folder = tmp_path / "special"
    [good] = write_jpegs(folder, 1)
    os.mkfifo(folder / "b.jpg")
    os.mkfifo(tmp_path / "globbed.png")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(folder / "c.png"))
        proc = model.process(folder, tmp_path / "*.png", os.devnull, "-f", "jsonl")
    results = {r["image"]: r.get("error") for r in map(json.loads, proc.stdout.splitlines())}
    regular = "not a regular file: only regular files are read as images"
    assert results == {
        str(good): None,
        str(folder / "b.jpg"): f"is a named pipe (FIFO), {regular}",
        str(folder / "c.png"): f"is a socket, {regular}",
        str(tmp_path / "globbed.png"): f"is a named pipe (FIFO), {regular}",
        os.devnull: f"is a character device, {regular}",
    }
    assert proc.returncode == 1 and "1 classified, 4 failed" in proc.stderr


def test_no_warning_text_ever_reaches_the_terminal(model, tmp_path):
    """Pillow's UserWarning about corrupt EXIF was printed; the photo is classified unrotated."""
    path = tmp_path / "corrupt_exif.jpg"
    cut = b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x05\x00\x12\x01"  # 5 tags promised, 2 bytes
    Image.new("RGB", (160, 120), (200, 30, 30)).save(path, exif=cut)
    proc = model.process(path, "-f", "jsonl")
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("1 classified, 0 failed"), proc.stderr
    assert proc.returncode == 0


def test_subfolders_left_out_without_recursive_are_one_note(model, tmp_path):
    """Without --recursive, subfolders were skipped silently (and listed one by one with -v)."""
    first, second = tmp_path / "first", tmp_path / "second"
    write_jpegs(first, 1)
    write_jpegs(second, 1)
    for sub in (first / "2019", first / "2020", first / "2021", second / "raw"):
        write_jpegs(sub, 1)
    one = model.run(first, "-f", "jsonl")
    assert one.exit_code == 0 and len(one.stdout.splitlines()) == 1
    assert one.stderr.splitlines()[:-1] == [
        f"cnn: note: 3 subfolders of {first} skipped; add --recursive to include them"
    ]
    two = model.run(first, second, "-f", "jsonl")
    assert two.stderr.splitlines()[:-1] == [
        "cnn: note: 4 subfolders of 2 folders skipped; add --recursive to include them"
    ]
    assert "note" not in model.run(first, second, "-r", "-f", "jsonl").stderr


def test_progress_on_a_terminal_shows_rate_and_total(model, photos):
    err = io.StringIO()
    env = Environment(
        stdout=io.StringIO(), stderr=err, stderr_isatty=True, colors=False, cache_dir=model.cache
    )
    args = model.args(photos[0].parent, "-r", "-f", "jsonl", "--batch-size", "4")
    assert CliRunner().invoke(app, [str(a) for a in args], obj=env).exit_code == 0
    assert "images/s" in err.getvalue() and f"/{len(photos)}" in err.getvalue()
    assert f"{len(photos)} classified, 0 failed" in err.getvalue().splitlines()[-1]


def test_files_from_stdin_in_a_real_process(model, photos):
    listing = "".join(f"{p}\n" for p in photos[:5])
    proc = model.process("--files-from", "-", "-f", "jsonl", stdin=listing)
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["image"] for line in proc.stdout.splitlines()] == listing.split()
    assert proc.stderr.startswith("5 classified, 0 failed")


def test_files_from_a_pipe_dev_null_or_a_missing_file(model, photos, tmp_path):
    """`--files-from <(ls)`, a FIFO and /dev/null were refused as "no such file"."""
    read, write = os.pipe()
    os.write(write, "".join(f"{p}\n" for p in photos[:2]).encode())
    os.close(write)
    command = [
        sys.executable,
        "-m",
        "cnncli",
        *map(str, model.args("--files-from", f"/dev/fd/{read}", "-f", "jsonl")),
    ]
    proc = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=model.env(),
        cwd=ROOT,
        timeout=300,
        pass_fds=(read,),
    )
    os.close(read)
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["image"] for line in proc.stdout.splitlines()] == list(
        map(str, photos[:2])
    )
    empty = model.run(photos[2], "--files-from", os.devnull, "-f", "jsonl")
    assert empty.exit_code == 0 and len(empty.stdout.splitlines()) == 1
    for listing, why in [(tmp_path / "none.txt", "no such file"), (tmp_path, "is a directory")]:
        run = model.run("--files-from", listing)
        assert run.exit_code == 2 and f"--files-from {listing}: {why}" in run.stderr


def test_a_name_that_is_not_utf8_prints_in_every_format(model, tmp_path):
    """Linux names are bytes; output streams are text, strict on a UTF-8 terminal."""
    raw = os.fsencode(tmp_path) + b"/caf\xe9.jpg"
    write_jpegs(tmp_path / "w", 1)[0].rename(os.fsdecode(raw))
    listing = tmp_path / "list.txt"
    listing.write_bytes(raw + b"\n")
    env = {**model.env(), "PYTHONIOENCODING": "utf-8:strict"}
    command = [
        sys.executable,
        "-m",
        "cnncli",
        *map(str, model.args("--files-from", listing, "-f", "csv")),
    ]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1].startswith(f"{tmp_path}/caf\\xe9.jpg,{ARCH}@sha256:")


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> list[Path]:
    """320 larger JPEGs in two folders: a run long enough to interrupt on purpose."""
    folder = tmp_path_factory.mktemp("library")
    return write_jpegs(folder / "x", 160, (480, 360)) + write_jpegs(folder / "y", 160, (480, 360))


def library_args(library: list[Path], out: Path) -> tuple[object, ...]:
    """Arguments classifying the whole library into `out` (jsonl), a few batches a second."""
    return (library[0].parent.parent, "--recursive", "-f", "jsonl", "-o", out, "--batch-size", 8)


def started(model: Model, args: tuple[object, ...]) -> subprocess.Popen:
    """`cnn classify ARGS` with the model, in a process of its own (stderr kept)."""
    command = [sys.executable, "-m", "cnncli", *map(str, model.args(*args))]
    return subprocess.Popen(
        command,
        env=model.env(),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_an_interrupted_run_resumes_to_exactly_one_line_per_image(model, library, tmp_path, sig):
    out = tmp_path / "out.jsonl"
    args = library_args(library, out)
    seed = random.randrange(10**6)
    threshold = random.Random(seed).randrange(1, len(library) // 2)
    first = started(model, args)
    deadline = time.monotonic() + 120
    while not (out.exists() and out.read_bytes().count(b"\n") >= threshold):
        assert first.poll() is None and time.monotonic() < deadline, f"seed {seed}: no lines"
        time.sleep(0.002)
    first.send_signal(sig)
    _, stderr = first.communicate(timeout=60)
    written = out.read_bytes().count(b"\n")
    context = f"seed {seed}, threshold {threshold}, written {written}"
    assert first.returncode == (130 if sig == signal.SIGINT else -signal.SIGKILL), stderr
    assert written < len(library), f"{context}: the run ended before the signal"
    if sig == signal.SIGINT:
        assert out.read_bytes().endswith(b"\n") and "interrupted:" in stderr
    second = model.process(*args, "--resume")
    assert second.returncode == 0, second.stderr
    images = [json.loads(line)["image"] for line in out.read_text().splitlines()]
    assert len(images) == len(library), context
    assert sorted(images) == sorted(map(str, library)), context


def test_jsonl_of_a_list_document_is_one_item_per_line(cli):
    lines = cli("models", "-f", "jsonl").stdout.splitlines()
    assert [json.loads(line) for line in lines] == cli("models", "-f", "json").json()


# --- Trust: the output file is cnn's, never a photo, one writer at a time; --resume is exact ---


@pytest.mark.parametrize(
    ("fmt", "content"),
    [
        ("jsonl", b'{"a": 1}'),  # a config without its final newline: was truncated to nothing
        ("csv", b'{"a": 1}'),
        ("csv", b"image,rank,index\n"),
        ("jsonl", b'{"image": "a.jpg", "error": "x"}\nmy notes'),  # not a tail cnn can leave
    ],
)
def test_resume_leaves_a_file_cnn_did_not_write_byte_for_byte(
    model, photos, tmp_path, fmt, content
):
    out = tmp_path / f"settings.{fmt}"
    out.write_bytes(content)
    run = model.run(photos[0], "-f", fmt, "-o", out, "--resume")
    assert run.exit_code == 1, run.stderr
    assert run.stderr.startswith(f"cnn: error: {out}: not the results of `cnn classify")
    assert len(run.stderr.splitlines()) == 1 and "refusing to append" in run.stderr
    assert out.read_bytes() == content


@pytest.mark.parametrize(("fmt", "torn"), [("jsonl", b'{"image": "a/im'), ("csv", b"image,mo")])
def test_resume_cuts_a_first_line_that_a_crash_tore(model, photos, tmp_path, fmt, torn):
    out = tmp_path / f"out.{fmt}"
    complete = model.run(photos[0], "-f", fmt)
    out.write_bytes(torn)
    run = model.run(photos[0], "-f", fmt, "-o", out, "--resume")
    assert run.exit_code == 0, run.stderr
    assert out.read_text() == complete.stdout


def test_output_named_like_a_photo_is_refused_before_it_is_created(model, photos, tmp_path):
    run = model.run(photos[0], "-f", "jsonl", "-o", tmp_path / "results.JPG")
    assert run.exit_code == 2 and "--output names an image file" in run.stderr
    assert not (tmp_path / "results.JPG").exists()


def test_output_that_is_an_input_however_spelled_is_refused_untouched(
    model, photos, tmp_path, monkeypatch
):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(photos[0].read_bytes())
    notes = tmp_path / "notes.dat"  # not an image: only its identity can tell
    notes.write_bytes(b"my notes\n")
    (tmp_path / "hard.jsonl").hardlink_to(photo)
    (tmp_path / "soft.csv").symlink_to(photo)
    (tmp_path / "disguised.dat").write_bytes(photos[1].read_bytes())  # a photo, by content
    monkeypatch.chdir(tmp_path)
    for image, output in [
        (notes, "./notes.dat"),
        ("notes.dat", notes),
        ("photo.jpg", "hard.jsonl"),
        (photo, "./soft.csv"),
        (photo, "disguised.dat"),
    ]:
        run = model.run(image, "-f", "jsonl", "-o", output)
        assert run.exit_code == 2, (image, output, run.stderr)
        assert (
            run.stderr.startswith(f"cnn: error: {Path(output)}: ")
            and len(run.stderr.splitlines()) == 1
        )
    assert photo.read_bytes() == photos[0].read_bytes() and notes.read_bytes() == b"my notes\n"
    assert (tmp_path / "disguised.dat").read_bytes() == photos[1].read_bytes()


@pytest.mark.parametrize("resume", [False, True])
def test_discovery_skips_the_output_file_itself(model, tmp_path, resume):
    paths = write_jpegs(tmp_path / "dir", 3)
    out = tmp_path / "dir" / "labels.jsonl"
    if resume:
        out.write_bytes(b"")
    run = model.run(tmp_path / "dir" / "*", "-f", "jsonl", "-o", out, "-v", *["--resume"] * resume)
    assert run.exit_code == 0, run.stderr
    assert [r["image"] for r in lines_of(out)] == [str(p) for p in paths]
    assert f"cnn: note: skipped {out}: it is the --output file" in run.stderr


def test_resume_matches_images_by_resolved_path(model, photos, tmp_path, monkeypatch):
    monkeypatch.chdir(photos[0].parent.parent)
    out = tmp_path / "out.jsonl"
    assert model.run("a", "-r", "-f", "jsonl", "-o", out).exit_code == 0  # relative names
    written = out.read_bytes()
    run = model.run(photos[0].parent, "-r", "-f", "jsonl", "-o", out, "--resume")  # absolute
    assert run.exit_code == 0, run.stderr
    assert run.stderr.startswith("0 classified, 0 failed")
    assert run.stderr.rstrip().endswith(f"; {len(photos)} already in {out}")
    some = model.run("./a/b/", "-f", "jsonl", "-o", out, "--resume")  # the count is of these
    assert some.stderr.rstrip().endswith(f"; 16 already in {out}")
    assert out.read_bytes() == written


def test_resume_retries_failed_images_keeping_one_record_each(model, photos, tmp_path):
    late = tmp_path / "late.jpg"  # missing in the first run, there for the second
    real, out = tmp_path / "real.jsonl", tmp_path / "link.jsonl"
    out.symlink_to(real)
    args = (photos[0], late, photos[1], "-f", "jsonl", "-o", out)
    first = model.run(*args)
    assert first.exit_code == 1 and "no such file" in lines_of(real)[1]["error"]
    kept = [line for line in real.read_text().splitlines(keepends=True) if "error" not in line]
    late.write_bytes(photos[2].read_bytes())
    run = model.run(*args, "--resume")
    assert run.exit_code == 0, run.stderr
    assert run.stderr.startswith("1 classified, 0 failed")
    assert run.stderr.rstrip().endswith(f"; 2 already in {out}")
    assert real.read_text().startswith("".join(kept))
    assert [r["image"] for r in lines_of(real)] == [str(photos[0]), str(photos[1]), str(late)]
    assert all("predictions" in r for r in lines_of(real))
    assert out.is_symlink() and sorted(os.listdir(tmp_path)) == [
        "late.jpg",
        "link.jsonl",
        "real.jsonl",
    ]


def test_a_second_run_on_a_file_being_written_stops_and_leaves_it_alone(model, library, tmp_path):
    out = tmp_path / "out.jsonl"
    args = library_args(library, out)
    first = started(model, args)
    try:
        deadline = time.monotonic() + 120
        while not (out.exists() and out.read_bytes().count(b"\n") >= 8):
            assert first.poll() is None and time.monotonic() < deadline, "no lines"
            time.sleep(0.005)
        first.send_signal(signal.SIGSTOP)  # frozen mid-run, holding the file
        assert first.poll() is None, "the first run ended before the second started"
        written = out.read_bytes()
        for again in (["--resume"], []):
            second = model.run(*args, *again)
            assert second.exit_code == 1
            assert second.stderr == (
                f"cnn: error: {out}: another cnn is writing this file; "
                "wait for it to finish or choose another --output\n"
            )
            assert out.read_bytes() == written
    finally:
        first.send_signal(signal.SIGCONT)
    _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    images = [json.loads(line)["image"] for line in out.read_text().splitlines()]
    assert sorted(images) == sorted(map(str, library))


def odd_names(folder: Path) -> list[Path]:
    """A photo named in UTF-8 but not ASCII, and one whose name is not UTF-8 at all (byte 0xff,
    which Python holds as the surrogate U+DCFF)."""
    source = write_jpegs(folder / "source", 1)[0]
    paths = [folder / "caf\u00e9.jpg", folder / os.fsdecode(b"bad\xff.jpg")]
    for path in paths:
        path.write_bytes(source.read_bytes())
    source.unlink()
    folder.joinpath("source").rmdir()
    return sorted(paths)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_names_that_cannot_be_encoded_are_written_losslessly_and_resumed(model, tmp_path, fmt):
    paths = odd_names(tmp_path / "odd")
    out = tmp_path / f"out.{fmt}"
    command = [sys.executable, "-m", "cnncli", *map(str, model.args(paths[0].parent))]
    ascii_io = {**model.env(), "PYTHONIOENCODING": "ascii"}
    proc = subprocess.run(
        [*command, "-f", fmt, "-o", out], capture_output=True, env=ascii_io, cwd=ROOT, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    written = out.read_bytes()
    if fmt == "csv":  # the names' own bytes
        assert b"/caf\xc3\xa9.jpg," in written and b"/bad\xff.jpg," in written
    else:  # JSON's escapes
        assert [r["image"] for r in lines_of(out)] == list(map(str, paths))
    run = model.run(paths[0].parent, "-f", fmt, "-o", out, "--resume")
    assert run.exit_code == 0, run.stderr
    redone = 1 if fmt == "csv" else 0  # CSV redoes its last image, in case a crash cut its rows
    assert run.stderr.startswith(f"{redone} classified, 0 failed")
    assert run.stderr.rstrip().endswith(f"; {2 - redone} already in {out}")
    assert out.read_bytes() == written


@pytest.mark.parametrize("fmt", ["table", "csv"])
def test_a_stdout_that_cannot_encode_a_name_gets_backslash_escapes(model, tmp_path, fmt):
    odd_names(tmp_path)
    raw = io.BytesIO()
    stdout = io.TextIOWrapper(raw, encoding="ascii", errors="strict", newline="")
    env = Environment(stdout=stdout, stderr=io.StringIO(), cache_dir=model.cache)
    args = model.args(tmp_path, "-f", fmt)
    assert CliRunner().invoke(app, [str(a) for a in args], obj=env).exit_code == 0
    stdout.flush()
    text = raw.getvalue().decode("ascii")
    assert str(tmp_path / "caf\\xe9.jpg") in text and str(tmp_path / "bad\\xff.jpg") in text


def test_the_table_is_printed_after_the_progress_display_is_gone(model, photos):
    terminal = io.StringIO()  # stdout and stderr on one terminal, as in a shell
    env = Environment(
        stdout=terminal,
        stderr=terminal,
        stdout_isatty=True,
        stderr_isatty=True,
        colors=False,
        cache_dir=model.cache,
    )
    args = model.args(photos[0], photos[1])
    assert CliRunner().invoke(app, [str(a) for a in args], obj=env).exit_code == 0
    screen = terminal.getvalue()
    assert screen.rindex("classifying with") < screen.index(str(photos[0]))
    assert screen.rstrip().splitlines()[-1].startswith("2 classified, 0 failed")


def test_a_device_output_is_never_locked(model, photos):
    import fcntl

    with open(os.devnull, "rb") as other:  # another program's lock on the shared /dev/null
        fcntl.flock(other.fileno(), fcntl.LOCK_EX)
        run = model.run(photos[0], "-f", "jsonl", "-o", os.devnull)
    assert run.exit_code == 0, run.stderr
