"""Shared test fixtures: the real CLI in-process with an injected environment, and test data.

`../shared` (real ImageNet weights and labelled photos) sits beside the repository on the
developers' machines and in CI; tests that need it skip with that reason where it is absent.
"""

from __future__ import annotations

import io
import json
import os
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


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove the session's compiled-model cache (hundreds of MB after the parity tests)."""
    import shutil

    shutil.rmtree(SESSION_CACHE, ignore_errors=True)
