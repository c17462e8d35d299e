"""One grammar for every command: the same option spelled the same everywhere, one error style
for every mistake, exit statuses that tell a user's mistake from a bug."""

from __future__ import annotations

import io

import pytest
import typer

from cnncli.cli import app
from cnncli.cli.app import _failed
from cnncli.env import Environment
from cnncli.errors import CnnError, ExitStatus
from tests.conftest import SAMPLES

CAT = SAMPLES / "cat.jpg"


def commands() -> dict[str, typer.core.TyperCommand]:
    """Every command by its path (`cache clear`), as Click sees it."""
    root = typer.main.get_command(app)
    found = {}
    for name, command in root.commands.items():
        subcommands = getattr(command, "commands", None)
        for sub, leaf in (subcommands or {None: command}).items():
            found[f"{name} {sub}" if sub else name] = leaf
    return found


def options() -> list[tuple[str, list[str]]]:
    """(command, the spellings of one option) for every option of every command."""
    return [
        (path, list(param.opts) + list(param.secondary_opts))
        for path, command in commands().items()
        for param in command.params
        if isinstance(param, typer.core.TyperOption)
    ]


def test_each_long_option_has_one_short_form_in_every_command():
    shorts: dict[str, set[str]] = {}
    for _, spellings in options():
        long = next(s for s in spellings if s.startswith("--"))
        shorts.setdefault(long, set()).update(s for s in spellings if not s.startswith("--"))
    assert {long: s for long, s in shorts.items() if len(s) > 1} == {}
    assert shorts["--arch"] == {"-a"} and shorts["--batch-size"] == {"-b"}
    assert shorts["--output"] == {"-o"} and shorts["--format"] == {"-f"}


@pytest.mark.parametrize(
    ("concept", "spelling"),
    [
        ("arch", "--arch"),
        ("batch", "--batch-size"),
        ("weight", "--weights"),
        ("engine", "--engine"),
        ("model", "--model"),
    ],
)
def test_a_concept_has_one_option_name(concept, spelling):
    named = {s for _, spellings in options() for s in spellings if concept in s}
    assert named == {spelling}


def test_every_command_that_models_takes_the_architecture_as_arch():
    takes = {path for path, spellings in options() if "--arch" in spellings}
    assert takes == {
        "classify",
        "compare",
        "explain",
        "summary",
        "bench",
        "evaluate",
        "cache clear",
        "train",
    }


def test_every_command_that_runs_a_model_takes_a_trained_one_as_model():
    takes = {path for path, spellings in options() if "--model" in spellings}
    assert takes == {"classify", "compare", "explain", "bench", "evaluate"}


@pytest.mark.parametrize(
    "args",
    [
        ["classify", CAT, "--nope"],
        ["classify", CAT, "-k", "0"],
        ["classify", CAT, "--format", "xml"],
        ["compare"],
        ["summary", "-a"],
        ["cache", "clear", "--what"],
        ["no-such-command"],
    ],
    ids=["unknown option", "out of range", "bad choice", "missing", "no value", "sub", "command"],
)
def test_every_parse_error_is_one_cnn_error_line_with_usage_status(cli, args):
    run = cli(*args)
    assert run.exit_code == ExitStatus.USAGE
    [line] = run.stderr.splitlines()
    assert line.startswith("cnn: error: ") and "--help" in line
    assert "╭" not in run.stderr and "Traceback" not in run.stderr


def test_a_bug_is_an_internal_error_not_a_users_failure():
    env = Environment(stdout=io.StringIO(), stderr=io.StringIO())
    assert _failed(env, ZeroDivisionError("division by zero")) == ExitStatus.INTERNAL == 70
    assert env.stderr.getvalue().startswith("cnn: error: internal error: ZeroDivisionError")
    assert _failed(env, CnnError("photo.jpg: unreadable")) == ExitStatus.FAILURE


def test_the_architecture_may_be_named_either_way_but_once(cli):
    assert cli("summary", "resnet18", "-f", "json").json()["arch"] == "resnet18"
    assert cli("summary", "-a", "ResNet-18", "-f", "json").json()["arch"] == "resnet18"
    run = cli("summary", "resnet18", "-a", "resnet34")
    assert run.exit_code == ExitStatus.USAGE and "differ" in run.stderr


def test_shell_completion_is_offered(cli):
    run = cli("--help")  # Click prints help itself: it lands in the runner's output
    assert run.exit_code == 0 and "--install-completion" in run.stderr
