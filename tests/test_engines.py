"""The compiled engine and its cache: parity with Keras, hits without TensorFlow, robustness."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnncli import bench, litert, registry
from cnncli.cache import ModelCache
from cnncli.choices import Engine, Precision
from cnncli.engines import open_classifier
from cnncli.env import Environment
from cnncli.loader import Weights
from cnncli.networks import RegistryNetwork
from tests.conftest import (
    MOBILENET_WEIGHTS,
    PHOTOS,
    ROOT,
    SAMPLES,
    needs_shared,
    run_reporting_imports,
    seeded_model,
)

pytestmark = pytest.mark.skipif(not litert.available(), reason="ai-edge-litert is not installed")

CAT = SAMPLES / "cat.jpg"


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A seeded MobileNet-0.25 weights file: converts in seconds, scores are not flat."""
    path = tmp_path_factory.mktemp("engines") / "mobilenet.weights.h5"
    seeded_model("mobilenet_0.25", 3).save_weights(path)
    return path


def classify(cli, cache, *args):
    run = cli("classify", *args, "-a", "mobilenet_0.25", "-f", "json", tmp=cache)
    assert run.exit_code == 0, run.stderr
    return run


def cnn_process(cache, *args) -> subprocess.CompletedProcess:
    """`cnn ARGS` in a fresh interpreter with CNN_CACHE_DIR=cache."""
    env = {**os.environ, "CNN_CACHE_DIR": str(cache)}
    command = [sys.executable, "-m", "cnncli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)


@needs_shared
def test_engines_agree_on_real_weights_over_the_photos(cli, tmp_path):
    expected = json.loads((PHOTOS / "expected.json").read_text())
    photos = [PHOTOS / name for name in expected]
    runs = {
        e: classify(cli, tmp_path, *photos, "-w", MOBILENET_WEIGHTS, "-e", e).json()
        for e in ("keras", "litert")
    }
    assert runs["litert"]["engine"] == "litert" and runs["keras"]["engine"] == "keras"
    for ours, ref in zip(runs["litert"]["results"], runs["keras"]["results"], strict=True):
        assert [p["index"] for p in ours["predictions"]] == [p["index"] for p in ref["predictions"]]
        np.testing.assert_allclose(
            [p["score"] for p in ours["predictions"]],
            [p["score"] for p in ref["predictions"]],
            atol=1e-4,
        )


def test_auto_converts_once_then_hits_without_tensorflow(cli, tmp_path, weights):
    first = classify(cli, tmp_path, CAT, "-w", weights)
    assert first.json()["engine"] == "litert"
    # Off a terminal too, the one slow step says what it is doing, once.
    assert first.stderr.splitlines() == [
        "cnn: note: converting mobilenet_0.25 for LiteRT (once, then cached)"
    ]
    [entry] = ModelCache(tmp_path).entries()
    assert entry.key.arch == "mobilenet_0.25" and entry.key.weights.startswith("sha256:")
    stamp = entry.path.stat().st_mtime_ns

    warm = run_reporting_imports(
        tmp_path, "classify", CAT, "-a", "mobilenet_0.25", "-w", weights, "-f", "json"
    )
    assert warm.returncode == 0, warm.stderr
    assert "converting" not in warm.stderr
    assert json.loads(warm.stderr) == []  # neither TensorFlow nor Keras was imported
    assert json.loads(warm.stdout)["results"] == first.json()["results"]
    assert entry.path.stat().st_mtime_ns == stamp  # the entry was read, not rewritten


def test_corrupt_entry_is_rebuilt_with_a_warning(cli, tmp_path, weights):
    good = classify(cli, tmp_path, CAT, "-w", weights).json()
    [entry] = ModelCache(tmp_path).entries()
    entry.path.write_bytes(b"not a flatbuffer")
    run = classify(cli, tmp_path, CAT, "-w", weights)
    warnings = [line for line in run.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "rebuilding" in warnings[0]
    assert run.json()["results"] == good["results"]
    [rebuilt] = ModelCache(tmp_path).entries()
    assert rebuilt.size > 1000


def flip_the_classifier(model: Path) -> None:
    """Negate the classifier's kernel inside a flatbuffer: the file still loads, the labels
    change. The kernel is found by its bytes, as the runtime reads them."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model))
    interpreter.allocate_tensors()
    kernel = next(
        interpreter.get_tensor(d["index"])
        for d in interpreter.get_tensor_details()
        if "conv_preds" in d["name"] and len(d["shape"]) == 4
    )
    data = model.read_bytes()
    assert data.count(kernel.tobytes()) == 1
    model.write_bytes(data.replace(kernel.tobytes(), (-kernel).tobytes()))


def test_an_altered_entry_that_still_loads_is_rebuilt_with_a_warning(cli, tmp_path, weights):
    good = classify(cli, tmp_path, CAT, "-w", weights, "-k", "3").json()["results"]
    [entry] = ModelCache(tmp_path).entries()
    flip_the_classifier(entry.path)
    assert litert.Runner(entry.path).input_size == 224  # it loads: only a content check sees it
    run = classify(cli, tmp_path, CAT, "-w", weights, "-k", "3")
    warnings = [line for line in run.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "changed" in warnings[0] and "rebuilding" in warnings[0]
    assert run.json()["results"] == good
    again = classify(cli, tmp_path, CAT, "-w", weights, "-k", "3")
    assert again.stderr == "" and again.json()["results"] == good


@pytest.mark.parametrize(
    ("where", "engine", "expected"),
    [
        ("a file", "auto", "keras"),
        ("under a file", "auto", "keras"),
        ("under a file", "litert", "litert"),
    ],
)
def test_an_unwritable_cache_runs_without_caching(cli, tmp_path, weights, where, engine, expected):
    # Tests run as root, for whom no directory is read-only; a path through a file is.
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    cache = blocker if where == "a file" else blocker / "cache"
    run = classify(cli, cache, CAT, "-w", weights, "-e", engine)
    assert run.json()["engine"] == expected
    warnings = [line for line in run.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and str(blocker) in warnings[0]
    assert blocker.read_text() == "not a directory"


def test_random_weights_are_never_cached(cli, tmp_path):
    run = classify(cli, tmp_path, CAT, "-w", "none", "-e", "litert")
    assert run.json()["engine"] == "litert"
    assert ModelCache(tmp_path).entries() == []
    assert classify(cli, tmp_path, CAT, "-w", "none").json()["engine"] == "keras"


def test_concurrent_writers_leave_one_whole_entry(tmp_path, weights):
    args = ["classify", CAT, "-a", "mobilenet_0.25", "-w", weights, "-f", "json"]
    env = {**os.environ, "CNN_CACHE_DIR": str(tmp_path)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "cnncli", *map(str, args)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
    first, second = (json.loads(out)["results"] for out, _ in outputs)
    assert first == second
    [entry] = ModelCache(tmp_path).entries()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "hashes") == [
        entry.path.name,
        entry.path.name + ".entry.json",
    ]
    later = cnn_process(tmp_path, *args)
    assert later.returncode == 0 and json.loads(later.stdout)["results"] == first


def test_failed_write_leaves_nothing(tmp_path):
    cache = ModelCache(tmp_path)

    def crash(path):
        path.write_bytes(b"half a model")
        raise KeyboardInterrupt

    key = cache.key(registry.get("mobilenet_0.25"), "imagenet", "litert")
    with pytest.raises(KeyboardInterrupt):
        cache.store(key, ".tflite", crash)
    assert list(tmp_path.iterdir()) == [] and cache.lookup(key, ".tflite") is None


def test_cache_clear_removes_temporary_files_of_dead_writers_only(cli, tmp_path):
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait(timeout=60)  # reaped: its pid names no process now
    live = tmp_path / f".m-litert-0.tflite.{os.getpid()}.abcd1234.tmp"
    abandoned = tmp_path / f".m-litert-0.tflite.{finished.pid}.abcd1234.tmp"
    for path in (live, abandoned):
        path.write_bytes(b"half a model")
    run = cli("cache", "clear", tmp=tmp_path)
    assert run.exit_code == 0 and "1 temporary file(s) of interrupted conversions" in run.stderr
    assert live.exists() and not abandoned.exists()


def test_cache_list_and_clear(cli, tmp_path, weights):
    classify(cli, tmp_path, CAT, "-w", weights)
    listed = cli("cache", "list", "-f", "json", tmp=tmp_path).json()
    assert [(e["arch"], e["engine"], e["input_size"]) for e in listed] == [
        ("mobilenet_0.25", "litert", 224)
    ]
    assert listed[0]["bytes"] > 1000 and listed[0]["age_seconds"] >= 0
    assert cli("cache", "clear", "resnet50", tmp=tmp_path).exit_code == 0
    assert len(ModelCache(tmp_path).entries()) == 1
    assert cli("cache", "clear", tmp=tmp_path).exit_code == 0
    assert ModelCache(tmp_path).entries() == []


def test_bench_reports_every_figure_with_the_machine(cli, tmp_path, weights):
    # Blank items of a comma list are ignored, as everywhere.
    run = cli(
        "bench",
        "-a",
        "mobilenet_0.25,",
        "-e",
        "keras,litert,",
        "-w",
        weights,
        "--repeats",
        "1",
        "--batch-size",
        "4",
        "-f",
        "json",
        tmp=tmp_path,
    )
    assert run.exit_code == 0, run.stderr
    steps = [line for line in run.stderr.splitlines() if line.startswith("cnn: note: timing")]
    assert len(steps) == 4  # a line per step off a terminal: warm, then cold, per engine
    doc = run.json()
    assert doc["machine"]["cores"] >= 1 and doc["machine"]["cpu"]
    assert [(r["arch"], r["engine"], r["batch_size"]) for r in doc["results"]] == [
        ("mobilenet_0.25", "keras", 4),
        ("mobilenet_0.25", "litert", 4),
    ]
    for r in doc["results"]:
        assert r["cold_process_s"] > 0 and r["warm_ms_per_image"] > 0 and r["images_per_s"] > 0


def test_bench_times_random_weights_from_the_cache_like_real_ones(tmp_path):
    record = registry.get("mobilenet_0.25")
    user = Environment(stdout=io.StringIO(), stderr=io.StringIO(), cache_dir=tmp_path / "user")
    network, env = bench.timed_network(RegistryNetwork(record, Weights("none")), user, tmp_path)
    assert network.weights.endswith(".weights.h5") and not network.random
    open_classifier(network, Engine.litert, env)  # bench's warm step, before the cold ones
    cold = cnn_process(
        env.cache_dir,
        *bench.cold_command(CAT, network, "litert", bench.Setting(Engine.litert, Precision.fp32)),
    )
    assert cold.returncode == 0, cold.stderr
    assert json.loads(cold.stdout)["engine"] == "litert"
    assert "converting" not in cold.stderr  # the cold process loaded the cached conversion
    assert not user.cache_dir.exists()  # random weights never reach the user's cache


def test_an_empty_comma_list_is_a_usage_error(cli):
    run = cli("bench", "-a", " , ", "-w", "none")
    assert run.exit_code == 2 and "--arch" in run.stderr
