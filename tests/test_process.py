"""The command as a process: quiet start, no TensorFlow for help and listings, clean streams,
closed and broken streams, signals, and the options every command shares."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from cnncli import litert, registry
from cnncli.errors import ExitStatus
from tests.conftest import ROOT, SAMPLES

CAT = SAMPLES / "cat.jpg"
#: TensorFlow told to log everything: what 2.21 prints on some CPUs whatever it is told.
LOUD = {"TF_CPP_MIN_LOG_LEVEL": "0"}
#: A random MobileNet-0.25: the cheapest real model.
RANDOM = ("-a", "mobilenet_0.25", "-w", "none")


def cnn(*args: object) -> list[str]:
    """The command line of `python -m cnncli ARGS`."""
    return [sys.executable, "-m", "cnncli", *map(str, args)]


PROBE = """
import sys
from typer.testing import CliRunner
from cnncli.cli import app
result = CliRunner().invoke(app, {args!r})
assert result.exit_code == 0, result.output
print(sorted(m for m in ("tensorflow", "keras", "numpy", "PIL") if m in sys.modules))
"""


def python(
    *args: object, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`python ARGS` from the repository's root, with `env` added to this process's variables."""
    return subprocess.run(
        [sys.executable, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
        env={**os.environ, **(env or {})},
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
def test_help_and_listing_import_no_tensorflow_numpy_or_pillow(args):
    proc = python("-c", PROBE.format(args=args))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("engine", ["keras", "litert"])
def test_no_line_but_cnns_own_even_when_tensorflow_logs_everything(engine):
    # TF_CPP_MIN_LOG_LEVEL=0 makes TensorFlow print here what 2.21 prints on some CPUs whatever
    # the variable says: absl's warning and the CPU-feature line at import, converter INFO lines.
    if engine == "litert" and not litert.available():
        pytest.skip("ai-edge-litert is not installed")
    proc = python("-m", "cnncli", "classify", CAT, *RANDOM, "-e", engine, "-f", "json", env=LOUD)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["engine"] == engine
    assert proc.stderr.splitlines() and all(
        line.startswith("cnn: ") for line in proc.stderr.splitlines()
    ), proc.stderr


def test_debug_lets_native_output_through():
    args = ("classify", CAT, *RANDOM, "-e", "keras", "-f", "json", "--debug")
    proc = python("-m", "cnncli", *args, env=LOUD)
    assert proc.returncode == 0, proc.stderr
    assert any(
        re.match(r"[IWEF]\d{4} |WARNING: All log messages", line)
        for line in proc.stderr.splitlines()
    ), proc.stderr


SILENCED = """
import os
from cnncli.env import Environment
from cnncli.quiet import native_output_silenced
env = Environment.from_process()
with native_output_silenced():
    os.write(1, b"native chatter\\n")
    os.write(2, b"native chatter\\n")
    env.stdout.write("a result\\n")
    env.stdout.flush()
    env.say("cnn: a line of cnn's own")
"""


def test_cnns_own_output_gets_through_while_native_output_is_silenced():
    proc = python("-c", SILENCED)
    assert proc.returncode == 0, proc.stderr
    assert (proc.stdout, proc.stderr) == ("a result\n", "cnn: a line of cnn's own\n")


def cnn_with(redirection: str, *args: object, **kwargs: Any) -> subprocess.CompletedProcess:
    """`cnn ARGS REDIRECTION` run by a shell, e.g. with `>&-` (stdout closed)."""
    command = ["sh", "-c", f'exec "$@" {redirection}', "sh", sys.executable, "-m", "cnncli"]
    return subprocess.run(
        [*command, *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=300, **kwargs
    )


def test_a_closed_stdout_is_one_error_line():
    proc = cnn_with(">&-", "models")
    assert proc.returncode == 1
    [line] = proc.stderr.splitlines()
    assert line.startswith("cnn: error: cannot write to standard output")


def test_a_closed_stdout_does_not_stop_a_run_writing_to_a_file(tmp_path):
    out = tmp_path / "out.jsonl"
    proc = cnn_with(">&-", "classify", CAT, *RANDOM, "-e", "keras", "-f", "jsonl", "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["image"] for line in out.read_text().splitlines()] == [str(CAT)]


def test_a_closed_stderr_does_not_stop_the_results():
    proc = cnn_with("2>&-", "classify", CAT, *RANDOM, "-e", "keras", "-k", "2", "-f", "csv")
    assert proc.returncode == 0
    assert [row[0] for row in csv.reader(io.StringIO(proc.stdout))] == ["image", str(CAT), str(CAT)]


@pytest.mark.parametrize("fmt", ["csv", "table"])
def test_a_reader_that_stops_reading_ends_the_run_quietly(fmt):
    # Four images of 1000 rows each, one batch at a time: far more than a pipe holds, so the
    # run is still writing when the reader (`| head -1`) goes away.
    command = cnn("classify", SAMPLES, *RANDOM, "-e", "keras", "-k", 1000, "-b", 1, "-f", fmt)
    proc = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline()
    proc.stdout.close()
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == ExitStatus.BROKEN_PIPE, stderr
    assert "error" not in stderr and "Traceback" not in stderr


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """Random MobileNet-0.25 weights in a file: a model that is cached (and converts quickly)."""
    from cnncli.loader import Weights, build

    path = tmp_path_factory.mktemp("process") / "mobilenet.weights.h5"
    build(registry.get("mobilenet_0.25"), Weights("none")).save_weights(path)
    return path


def stop_when(line: str, sig: int, args: list[object], cache: Path) -> tuple[int, str]:
    """Run `cnn ARGS` with SIGINT ignored, as a shell leaves it for `cnn ... &` in a script
    (Python keeps it ignored), send `sig` when a stderr line contains `line`, and return the
    exit status and stderr."""
    command = ["sh", "-c", 'trap "" INT; exec "$@"', "sh", sys.executable, "-m", "cnncli", *args]
    env = {**os.environ, "CNN_CACHE_DIR": str(cache)}
    proc = subprocess.Popen(
        list(map(str, command)),
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    watchdog = threading.Timer(300, proc.kill)  # bounds the blocking reads below
    watchdog.start()
    try:
        seen = []
        while not seen or line not in seen[-1]:
            seen.append(proc.stderr.readline())
            assert seen[-1], f"the run ended before a line with {line!r}: {''.join(seen)}"
        proc.send_signal(sig)
        _, rest = proc.communicate(timeout=120)
    finally:
        watchdog.cancel()
    return proc.returncode, "".join(seen) + rest


@pytest.mark.parametrize(
    ("sig", "stage", "status"),
    [
        (signal.SIGINT, "loading", 130),
        (signal.SIGINT, "converting", 130),
        (signal.SIGTERM, "converting", 143),
    ],
)
def test_a_stop_signal_stops_the_run_at_any_stage(weights, tmp_path, sig, stage, status):
    if stage == "loading":  # the random-weights warning comes just before TensorFlow loads
        args, line = ["-w", "none", "-e", "keras"], "random weights"
    else:
        args, line = ["-w", weights, "-e", "litert"], "converting"
    code, stderr = stop_when(line, sig, ["classify", CAT, "-a", "mobilenet_0.25", *args], tmp_path)
    assert code == status, stderr
    assert "Traceback" not in stderr
    assert list(tmp_path.glob("**/*.tmp")) == []  # the half-written model was removed


def test_cache_clear_removes_what_a_killed_conversion_left(weights, tmp_path, cli):
    args = ["classify", CAT, "-a", "mobilenet_0.25", "-w", weights, "-e", "litert"]
    code, _ = stop_when("converting", signal.SIGKILL, args, tmp_path)
    assert code == -signal.SIGKILL
    assert len(list(tmp_path.glob("*.tmp"))) == 1
    run = cli("cache", "clear", tmp=tmp_path)
    assert run.exit_code == 0 and "1 temporary file(s) of interrupted conversions" in run.stderr
    assert list(tmp_path.glob("**/*.tmp")) == []


def test_sigterm_during_a_run_flushes_the_results_and_exits_143(tmp_path):
    library = tmp_path / "library"
    library.mkdir()
    for i in range(400):
        shutil.copy(CAT, library / f"{i:03d}.jpg")
    out = tmp_path / "out.jsonl"
    command = cnn(
        "classify", library, *RANDOM, "-e", "keras", "-k", 1, "-b", 4, "-f", "jsonl", "-o", out
    )
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        text=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 300
    while not (out.exists() and out.read_bytes().count(b"\n") >= 4):
        assert proc.poll() is None and time.monotonic() < deadline, "no results were written"
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    written = out.read_bytes()
    assert written.endswith(b"\n") and written.count(b"\n") < 400
    assert "interrupted:" in stderr and "Traceback" not in stderr


COMMANDS = [
    [],
    ["classify"],
    ["compare"],
    ["explain"],
    ["summary"],
    ["models"],
    ["bench"],
    ["cache"],
    ["cache", "list"],
    ["cache", "clear"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "cnn")
def test_help_names_values_not_python_types(cli, command):
    run = cli(*command, "--help")
    assert run.exit_code == 0
    assert "Usage:" in run.stderr
    assert not re.search(r"<[a-z][^>]*>|\{[a-z]+\}", run.stderr), run.stderr


def test_debug_is_accepted_after_the_command_too(cli):
    run = cli("classify", CAT, "-a", "resnet5O", "-w", "none", "--debug")
    assert run.exit_code == 2
    assert "Traceback" in run.stderr and "did you mean" in run.stderr


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
    by_name = {m["arch"]: m for m in models}
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
