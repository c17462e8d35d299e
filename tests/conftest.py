"""Shared test fixtures: the real CLI in-process with an injected environment, and test data.

`../shared` (real ImageNet weights and labelled photos) sits beside the repository on the
developers' machines and in CI; tests that need it skip with that reason where it is absent.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cnncli.cli import app
from cnncli.env import Environment

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_images"
SHARED = ROOT.parent / "shared"
MODELS = SHARED / "models"
PHOTOS = SHARED / "photos"
MOBILENET_WEIGHTS = MODELS / "mobilenet_v1_0.25_224_imagenet.weights.h5"

#: One compiled-model cache for the whole session, so each conversion happens once per run.
#: Named by process id: pytest loads this file both as `conftest` and as `tests.conftest`.
SESSION_CACHE = Path(tempfile.gettempdir()) / f"cnncli-test-cache-{os.getpid()}"

needs_shared = pytest.mark.skipif(
    not MOBILENET_WEIGHTS.is_file(), reason="../shared/models (real ImageNet weights) is absent"
)


@dataclass
class Run:
    """One CLI invocation: exit code and what it wrote to each stream."""

    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def run_cli(*args: object, tty: bool = False, colors: bool = True, tmp: Path | None = None) -> Run:
    """Invoke `cnn ARGS` through Typer's runner with its own streams (no globals patched)."""
    out, err = io.StringIO(), io.StringIO()
    env = Environment(
        stdout=out,
        stderr=err,
        stdout_isatty=tty,
        stderr_isatty=False,
        colors=colors,
        cache_dir=tmp or SESSION_CACHE,
    )
    result = CliRunner().invoke(app, [str(a) for a in args], obj=env)
    # Usage errors are Click's: they go to the runner's own output.
    return Run(result.exit_code, out.getvalue(), err.getvalue() + result.output)


@pytest.fixture
def cli():
    return run_cli


def seeded_model(name: str, seed: int) -> Any:
    """A randomly initialised model whose scores are not flat.

    Freshly initialised classifiers give every class about 1/1000 (in MobileNet the features
    vanish layer by layer). One training-mode pass over random pixels with momentum 0 sets each
    batch norm's moving statistics to what it sees, so activations stay alive in inference;
    then the classifier's kernel is scaled so the logits spread with a standard deviation of 2.
    """
    import numpy as np

    from cnncli import registry
    from cnncli.loader import Weights, build
    from cnncli.preprocess import preprocess
    from cnncli.tf_runtime import import_keras

    keras = import_keras()
    keras.utils.set_random_seed(seed)
    arch = registry.get(name)
    model = build(arch, Weights("none"))
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0
    size = arch.input_size
    pixels = np.random.default_rng(seed).uniform(0, 255, (4, size, size, 3)).astype(np.float32)
    batch = preprocess(pixels, arch.preprocessing)
    model(batch, training=True)
    for layer in norms:
        layer.momentum = 0.99
    logits = np.log(np.clip(np.asarray(model(batch, training=False), np.float64), 1e-300, 1))
    kernel = next(layer for layer in reversed(model.layers) if layer.weights).weights[0]
    kernel.assign(kernel.numpy() * (2.0 / logits.std(axis=1).mean()))
    return model


#: The classes of the test bundle, in index order, and the colour channel each is the colour of.
COLOURS = {"blue": 2, "green": 1, "red": 0}


def top5_hits(scores: Any, accepted: Any) -> int:
    """How many rows of `scores` (photos x classes) have one of the photo's `accepted` class
    indices (../shared/photos/expected.json's values, in the same order) among their top five."""
    import numpy as np

    top5 = np.argsort(-scores, axis=1)[:, :5]
    pairs = zip(top5.tolist(), accepted, strict=True)
    return sum(bool(set(row) & set(classes)) for row, classes in pairs)


def colour_photo(path: Path, channel: int, seed: int, size: tuple[int, int] = (96, 72)) -> Path:
    """A noisy photo of one colour (channel 0 red, 1 green, 2 blue), as the test bundle's
    classes are; `channel` -1 gives a photo of no colour in particular (grey)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = np.full((size[1], size[0], 3), 90.0)
    if channel >= 0:
        pixels[..., channel] = 210
    noisy = np.clip(pixels + rng.normal(0, 25, pixels.shape), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(noisy).save(path)
    return path


def write_bundle(folder: Path, seed: int = 5) -> Path:
    """A trained model's folder as `cnn train` writes one: MobileNet-0.25 (seeded weights) cut
    at its head's pooling input (so its layers keep their registry names), then pooling,
    dropout and a softmax Dense layer over `COLOURS`, flat as Grad-CAM needs it. Its head is
    fitted (ridge regression on pooled features) to noisy solid colours, so it is right about
    them; its metadata says it was trained on `--resize stretch` pictures."""
    import numpy as np

    from cnncli import bundle, registry
    from cnncli.preprocess import preprocess
    from cnncli.tf_runtime import import_keras

    keras, layers = import_keras(), import_keras().layers
    full = seeded_model("mobilenet_0.25", seed)
    head = [layer for layer in full.layers if isinstance(layer, layers.GlobalAveragePooling2D)]
    pooled = layers.GlobalAveragePooling2D(name="pool")(head[-1].input)
    dropped = layers.Dropout(0.2, name="dropout")(pooled)
    classes = layers.Dense(len(COLOURS), activation="softmax", name="classes")(dropped)
    model = keras.Model(full.input, classes)
    rng = np.random.default_rng(seed)
    channels = np.repeat(list(COLOURS.values()), 8)
    photos = np.full((len(channels), 224, 224, 3), 90.0)
    photos[np.arange(len(channels)), :, :, channels] = 210
    photos = np.clip(photos + rng.normal(0, 25, photos.shape), 0, 255)
    features = keras.Model(full.input, pooled).predict_on_batch(preprocess(photos, "tf"))
    centred = features - features.mean(axis=0)
    targets = np.eye(len(COLOURS))[np.repeat(np.arange(len(COLOURS)), 8)] - 1 / len(COLOURS)
    kernel = np.linalg.solve(
        centred.T @ centred + 1e-2 * np.eye(centred.shape[1]), centred.T @ targets
    )
    scale = 1.5 / (centred @ kernel).std()  # logits spread enough that scores are not flat
    bias = -features.mean(axis=0) @ kernel
    model.get_layer("classes").set_weights([kernel * scale, bias * scale])
    metadata = {
        "arch": "mobilenet_0.25",
        "input_size": 224,
        "preprocessing": registry.get("mobilenet_0.25").preprocessing,
        "resize": "stretch",
        "classes": list(COLOURS),
        "params": model.count_params(),
    }
    bundle.write(folder, model, metadata)
    return folder


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Path:
    """The test bundle (`write_bundle`), built once for the session; its LiteRT conversion goes
    to the session's compiled-model cache the first time a test runs it there."""
    return write_bundle(tmp_path_factory.mktemp("bundles") / "colours")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove the session's compiled-model cache (hundreds of MB after the parity tests)."""
    import shutil

    shutil.rmtree(SESSION_CACHE, ignore_errors=True)


#: Runs `cnn` as `main()` does, then reports on stderr which of TensorFlow and Keras it imported.
IMPORTS_PROBE = """\
import sys, json, io, contextlib
from cnncli.cli import main
sys.argv = ['cnn', *json.loads(sys.argv[1])]
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try: main()
    except SystemExit as exit: assert not exit.code, exit.code
sys.stderr.write(json.dumps([m for m in ('tensorflow', 'keras') if m in sys.modules]))
print(out.getvalue())
"""


def run_reporting_imports(cache: Path, *args: object) -> subprocess.CompletedProcess:
    """`cnn ARGS` in a fresh interpreter (CNN_CACHE_DIR=cache): stdout is cnn's, stderr the JSON
    list of TensorFlow and Keras among the modules the run imported (a warm cache hit: none)."""
    env = {**os.environ, "CNN_CACHE_DIR": str(cache)}
    command = [sys.executable, "-c", IMPORTS_PROBE, json.dumps([str(a) for a in args])]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
