"""Shared test fixtures: the real CLI in-process with an injected environment, and test data.

`../shared` (real ImageNet weights and labelled photos) sits beside the repository on the
developers' machines and in CI; tests that need it skip with that reason where it is absent.
"""

from __future__ import annotations

import io
import json
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
    env = Environment(stdout=out, stderr=err, stdout_isatty=tty, stderr_isatty=False,
                      colors=colors, cache_dir=tmp or ROOT / ".pytest_cache" / "cnncli")
    result = CliRunner().invoke(app, [str(a) for a in args], obj=env)
    # Usage errors are Click's: they go to the runner's own output.
    return Run(result.exit_code, out.getvalue(), err.getvalue() + result.output)


@pytest.fixture
def cli():
    return run_cli
