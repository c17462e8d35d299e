"""The `cnn` application: its help, its error lines and exit statuses, and the process entry point.

Every mistake is one line, `cnn: error: ...`, whoever finds it: cnn's own checks (`CnnError`) or
Click's parsing (an unknown option, a value out of range). The exit status says what happened
(`errors.ExitStatus`): 2 for a wrong command line, 1 when something the user can fix failed, 70
for a bug in cnn, 130 or 143 when stopped by a signal, 141 when the reader of stdout went away.
"""

from __future__ import annotations

import functools
import inspect
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypeVar

import typer
from typer.core import TyperArgument, TyperGroup

# Typer's own Click: vendored since Typer 0.2x, hence the bound on Typer in pyproject.toml.
from typer.core import _click as click

from cnncli import __version__, quiet
from cnncli.cli.options import DebugOption, optional_values
from cnncli.env import Environment
from cnncli.errors import STOP_SIGNALS, CnnError, ExitStatus, Interrupted

F = TypeVar("F", bound=Callable[..., Any])


class CnnGroup(TyperGroup):
    """Typer's group with cnn's manners: help that names what a value is (ARCH, FILE, K), never a
    Python type, and parse errors as one `cnn: error:` line instead of a boxed panel."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Click's main, with its usage errors reported the way cnn reports every error."""
        args = optional_values(list(sys.argv[1:] if args is None else args))
        try:
            status = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError:  # the help is already printed
            status = ExitStatus.USAGE
        except click.exceptions.ClickException as exc:
            env = extra.get("obj") or Environment()
            env.error(f"{_sentence(exc.format_message())} (see `{_usage(exc)} --help`)")
            status = exc.exit_code
        if not standalone_mode:
            return status
        sys.exit(status if isinstance(status, int) else ExitStatus.SUCCESS)

    def get_params(self, ctx: typer.Context) -> list[Any]:
        return _plain(super().get_params(ctx))

    def get_command(self, ctx: typer.Context, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None and not isinstance(command, TyperGroup):
            _plain(command.get_params(ctx))
        return command


class PlainArgument(TyperArgument):
    """An argument shown by its metavar alone (IMAGE...), never as a Python type (`<str>`) or in
    braces (`{image}`). Typer has no setting for this (hence the bound on Typer)."""

    def display_type_rich(self, ctx: typer.Context) -> str | None:
        return None

    def _usage_display_name(self) -> str:
        name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
        return f"{name}..." if self.nargs != 1 else name


def _plain(params: list[Any]) -> list[Any]:
    """`params` shown without type names: arguments as `PlainArgument`s, flags with no metavar."""
    for param in params:
        if isinstance(param, TyperArgument):
            param.__class__ = PlainArgument
        elif getattr(param, "is_flag", False):
            param.metavar = ""
    return params


def _sentence(text: str) -> str:
    """Click's message as the rest of a `cnn: error:` line: one line, lower-case start."""
    line = " ".join(text.split())
    return line[:1].lower() + line[1:]


def _usage(exc: Any) -> str:
    """The command the error is about (`cnn classify`), for the pointer to its help."""
    ctx = getattr(exc, "ctx", None)
    return ctx.command_path if ctx is not None else "cnn"


app = typer.Typer(
    name="cnn",
    help="Classify photos with pretrained ImageNet CNNs, compare them, read their anatomy.",
    cls=CnnGroup,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def environment(ctx: typer.Context) -> Environment:
    """The injected environment (tests pass their own through `obj`)."""
    if ctx.obj is None:
        ctx.obj = Environment.from_process()
    return ctx.obj


def set_debug(env: Environment, debug: bool) -> None:
    """`--debug`: tracebacks for errors, and native libraries' output no longer silenced."""
    env.debug = debug
    quiet.show_native_output(debug)


def guarded(command: F) -> F:
    """Run a command so every outcome is an exit status and at most one line on stderr, never a
    traceback (but under `--debug`).

    It also gives the command a `--debug` option, so that the flag works after the command's
    name as well as before it.
    """

    @functools.wraps(command)
    def wrapper(ctx: typer.Context, *args: Any, debug: bool = False, **kwargs: Any) -> Any:
        env = environment(ctx)
        if debug:
            set_debug(env, True)
        try:
            return command(ctx, *args, **kwargs)
        except typer.Exit:
            raise
        except Exception as exc:
            raise typer.Exit(_failed(env, exc)) from None
        except KeyboardInterrupt as exc:
            stop = Interrupted.of(exc)
            env.error("interrupted" if stop.signum == signal.SIGINT else f"stopped by {stop}")
            raise typer.Exit(stop.exit_code) from None

    signature = inspect.signature(command, eval_str=True)
    debug = inspect.Parameter(
        "debug", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=DebugOption
    )
    wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*signature.parameters.values(), debug]
    )
    return wrapper  # type: ignore[return-value]


def _failed(env: Environment, exc: Exception) -> int:
    """Report a command's exception and give its exit status: the user's to fix (`CnnError`),
    the reader of stdout gone (`cnn ... | head -1`: quietly), or a bug in cnn."""
    if isinstance(exc, BrokenPipeError):
        env.drop_output()
        return ExitStatus.BROKEN_PIPE
    if env.debug:
        traceback.print_exc(file=env.stderr)
    if isinstance(exc, CnnError):
        env.error(str(exc))
        return exc.exit_code
    env.error(
        f"internal error: {type(exc).__name__}: {exc} (a bug in cnn, not your doing: rerun with "
        "--debug for the traceback, and report it)"
    )
    return ExitStatus.INTERNAL


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cnn {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    debug: DebugOption = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show version.")
    ] = False,
) -> None:
    """Classify photos with pretrained ImageNet CNNs, compare them, read their anatomy."""
    set_debug(environment(ctx), debug)


def main() -> None:
    """Console-script entry point: the process's own environment, and the stop signals raised
    wherever the run is. SIGINT too when the parent left it ignored (a script's `cnn ... &`):
    a signal someone sends on purpose must stop the run."""
    env = Environment.from_process()
    for number in STOP_SIGNALS:
        signal.signal(number, Interrupted.handler)
    app(obj=env)
