"""The command as a process: quiet start, no TensorFlow for help and listings, clean streams."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT, SAMPLES

PROBE = """
import sys
from typer.testing import CliRunner
from cnncli.cli import app
result = CliRunner().invoke(app, {args!r})
assert result.exit_code == 0, result.output
print(sorted(m for m in ("tensorflow", "keras") if m in sys.modules))
"""


def python(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["classify", "--help"],
        ["compare", "--help"],
        ["summary", "--help"],
        ["models", "--help"],
        ["models", "--format", "json"],
    ],
)
def test_help_and_listing_do_not_import_tensorflow(args):
    proc = python("-c", PROBE.format(args=args))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_classify_prints_no_tensorflow_banner():
    proc = python(
        "-m",
        "cnncli",
        "classify",
        str(SAMPLES / "cat.jpg"),
        "-a",
        "mobilenet_0.25",
        "-w",
        "none",
        "-k",
        "2",
        "-f",
        "json",
    )
    assert proc.returncode == 0, proc.stderr
    [warning] = proc.stderr.splitlines()  # random weights: nothing else
    assert warning.startswith("cnn: warning: mobilenet_0.25: random weights")
    assert json.loads(proc.stdout)["arch"] == "mobilenet_0.25"


def test_console_script_is_installed():
    cnn = shutil.which("cnn")
    if cnn is None:
        pytest.skip("the `cnn` script is not on PATH (install with `pip install -e .`)")
    proc = subprocess.run([cnn, "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("cnn ")


def test_models_json_lists_every_record_with_int_input_size(cli):
    run = cli("models", "--format", "json")
    assert run.exit_code == 0
    models = run.json()
    assert len(models) == 52
    by_name = {m["name"]: m for m in models}
    assert by_name["inception_v3"]["input_size"] == 299
    assert all(isinstance(m["input_size"], int) for m in models)
    assert by_name["vgg16"]["params"] == 138_357_544


def test_models_table_has_a_row_per_architecture(cli):
    run = cli("models")
    assert run.exit_code == 0
    assert (
        sum(
            line.split()[0] == "efficientnet_b7" for line in run.stdout.splitlines() if line.strip()
        )
        == 1
    )
