"""The `cnn` command: a thin layer of options over the library.

Each command parses its options, calls the library, and hands the result to `output.emit`.
Nothing here imports TensorFlow, so `--help` is instant; errors become one line on stderr.
"""

from __future__ import annotations

import functools
import inspect
import signal
import traceback
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from typer.core import TyperArgument, TyperGroup

from cnncli import __version__, catalog, quiet, registry
from cnncli.engines import Engine
from cnncli.env import Environment
from cnncli.errors import STOP_SIGNALS, CnnError, Interrupted, UsageError
from cnncli.images import Resize
from cnncli.output import Format, emit

#: The status of a command whose reader went away (`cnn ... | head -1`): what a shell reports
#: for coreutils and git in that case (128 + SIGPIPE), so scripts can tell it from success.
BROKEN_PIPE_EXIT = 128 + signal.SIGPIPE


class PlainArgument(TyperArgument):
    """An argument shown by its metavar alone (IMAGE...), never as a Python type (`<str>`) or in
    braces (`{image}`)."""

    def display_type_rich(self, ctx: typer.Context) -> str | None:
        return None

    def _usage_display_name(self) -> str:
        name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
        return f"{name}..." if self.nargs != 1 else name


class PlainHelpGroup(TyperGroup):
    """Help that names what a value is (ARCH, FILE, K) and never a Python type: flags get no
    metavar, arguments show theirs alone. Typer has no setting for either, so the parameters of
    this group and of each of its commands are adjusted as they are looked up."""

    def get_params(self, ctx: typer.Context) -> list[Any]:
        return _plain(super().get_params(ctx))

    def get_command(self, ctx: typer.Context, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None and not isinstance(command, TyperGroup):
            _plain(command.get_params(ctx))
        return command


def _plain(params: list[Any]) -> list[Any]:
    """`params` shown without type names: arguments as `PlainArgument`s, flags with no metavar."""
    for param in params:
        if isinstance(param, TyperArgument):
            param.__class__ = PlainArgument
        elif getattr(param, "is_flag", False):
            param.metavar = ""
    return params


def choices(enum: type[Enum]) -> str:
    """The metavar of an option taking one of an enum's values: `table|json|jsonl|csv`."""
    return "|".join(member.value for member in enum)


app = typer.Typer(
    name="cnn",
    help="Classify photos with pretrained ImageNet CNNs, compare them, read their anatomy.",
    cls=PlainHelpGroup,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

F = TypeVar("F", bound=Callable[..., Any])

ArchOption = Annotated[
    str, typer.Option("--arch", "-a", metavar="ARCH", help="Architecture (`cnn models`).")
]
ArchsOption = Annotated[
    str, typer.Option("--arch", "-a", metavar="ARCH,...", help="Comma-separated architectures.")
]
TopOption = Annotated[
    int, typer.Option("--top", "-k", metavar="K", min=1, max=1000, help="How many classes to show.")
]
WeightsOption = Annotated[
    str,
    typer.Option(
        "--weights",
        "-w",
        metavar="WEIGHTS",
        help="imagenet (download), none (random) or a .h5 file.",
    ),
]
ResizeOption = Annotated[
    Resize,
    typer.Option(
        metavar=choices(Resize),
        help="crop: shorter side to size/0.875, centre crop; stretch: squash.",
    ),
]
FormatOption = Annotated[
    Format, typer.Option("--format", "-f", metavar=choices(Format), help="Output format.")
]
EngineOption = Annotated[
    Engine,
    typer.Option(
        "--engine", "-e", metavar=choices(Engine), help="auto: LiteRT when installed, else Keras."
    ),
]
DebugOption = Annotated[
    bool, typer.Option("--debug", help="Show tracebacks and native libraries' own output.")
]


def environment(ctx: typer.Context) -> Environment:
    """The injected environment (tests pass their own through `obj`)."""
    if ctx.obj is None:
        ctx.obj = Environment.from_process()
    return ctx.obj


def set_debug(env: Environment, debug: bool) -> None:
    """`--debug`: tracebacks for errors, and native libraries' output no longer silenced."""
    env.debug = debug
    quiet.show_native_output(debug)


def report(env: Environment, message: str) -> None:
    """One error line on stderr."""
    env.say(f"cnn: error: {message}", style="red")


def comma_list(text: str, option: str) -> list[str]:
    """The items of a comma-separated option, the one way every such option is read: blank
    items are ignored (`-a resnet50,`), a list with none at all is a usage error."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise UsageError(f"{option} '{text}' names nothing: give one or more, separated by commas")
    return items


def guarded(command: F) -> F:
    """Run a command so a user's mistake is one line and an exit code, never a traceback.

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
        except CnnError as exc:
            if env.debug:
                traceback.print_exc(file=env.stderr)
            report(env, str(exc))
            raise typer.Exit(exc.exit_code) from None
        except typer.Exit:
            raise
        except BrokenPipeError:
            env.drop_output()  # the reader stopped reading: end quietly, as `head` expects
            raise typer.Exit(BROKEN_PIPE_EXIT) from None
        except KeyboardInterrupt as exc:
            stop = Interrupted.of(exc)
            report(env, "interrupted" if stop.signum == signal.SIGINT else f"stopped by {stop}")
            raise typer.Exit(stop.exit_code) from None
        except Exception as exc:
            if env.debug:
                raise
            report(env, f"{type(exc).__name__}: {exc} (rerun with --debug for the traceback)")
            raise typer.Exit(1) from None

    signature = inspect.signature(command, eval_str=True)
    debug = inspect.Parameter(
        "debug", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=DebugOption
    )
    wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*signature.parameters.values(), debug]
    )
    return wrapper  # type: ignore[return-value]


def version_callback(value: bool) -> None:
    if value:
        typer.echo(f"cnn {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    debug: DebugOption = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=version_callback, is_eager=True, help="Show version."),
    ] = False,
) -> None:
    """Classify photos with pretrained ImageNet CNNs, compare them, read their anatomy."""
    set_debug(environment(ctx), debug)


@app.command()
@guarded
def classify(
    ctx: typer.Context,
    images: Annotated[
        list[str] | None,
        typer.Argument(metavar="IMAGE", help="Image files, directories or globs."),
    ] = None,
    arch: ArchOption = "resnet50",
    top: TopOption = 5,
    weights: WeightsOption = "imagenet",
    resize: ResizeOption = Resize.crop,
    fmt: FormatOption = Format.table,
    batch_size: Annotated[
        int, typer.Option(metavar="N", min=1, help="Images per forward pass.")
    ] = 16,
    engine: EngineOption = Engine.auto,
    recursive: Annotated[
        bool, typer.Option("--recursive", "-r", help="Descend into subdirectories.")
    ] = False,
    files_from: Annotated[
        str | None,
        typer.Option(
            metavar="FILE", help="Also classify the paths listed in FILE, one per line (-: stdin)."
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", metavar="FILE", help="Write the results to FILE."),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Skip the images --output already holds; append the rest."),
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="List the files skipped in directories.")
    ] = False,
) -> None:
    """Label photos with an ImageNet classifier; jsonl and csv stream as they go."""
    from cnncli import pipeline, results_file
    from cnncli.engines import open_classifier, warn_if_random
    from cnncli.inputs import Inputs
    from cnncli.loader import Weights

    env = environment(ctx)
    record, source = registry.get(arch), Weights.parse(weights)
    if not images and files_from is None:
        raise UsageError("name the images to classify (files, directories, globs, --files-from)")
    if resume and (output is None or fmt not in results_file.STREAMED):
        raise UsageError("--resume needs --output FILE and --format jsonl or csv")
    warn_if_random(env, [(record, source)])
    inputs = Inputs(tuple(images or ()), recursive, files_from)
    inputs.check()
    job = pipeline.Job(inputs, source, top, resize, batch_size, fmt, output, resume, verbose)
    tally = pipeline.run_job(env, job, lambda: open_classifier(record, source, engine, env))
    if tally.interrupted:
        raise tally.interrupted
    if tally.failed:
        raise typer.Exit(1)


@app.command()
@guarded
def compare(
    ctx: typer.Context,
    image: Annotated[str, typer.Argument(metavar="IMAGE", help="One photo.")],
    archs: ArchsOption = ",".join(registry.COMPARED),
    top: TopOption = 5,
    weights: Annotated[
        str,
        typer.Option(
            "--weights",
            "-w",
            metavar="WEIGHTS,...",
            help="One source for all, or one per arch (a,b,...).",
        ),
    ] = "imagenet",
    resize: ResizeOption = Resize.crop,
    fmt: FormatOption = Format.table,
    engine: EngineOption = Engine.auto,
    explain_to: Annotated[
        Path | None,
        typer.Option(
            "--explain",
            metavar="FILE",
            help="Also write a Grad-CAM montage, a panel per arch (PNG).",
        ),
    ] = None,
) -> None:
    """Several architectures side by side on the same photo."""
    from cnncli import compare as lib
    from cnncli.engines import Classifier, open_classifier, warn_if_random
    from cnncli.loader import Weights

    env = environment(ctx)
    records = [registry.get(name) for name in comma_list(archs, "--arch")]
    sources = [Weights.parse(w) for w in comma_list(weights, "--weights")]
    if len(sources) not in (1, len(records)):
        raise UsageError(
            f"--weights gives {len(sources)} sources for {len(records)} archs: "
            "give one for all or one per arch"
        )
    sources = sources * len(records) if len(sources) == 1 else sources

    def loader(record: registry.Arch, source: Weights) -> Callable[[], Classifier]:
        return lambda: open_classifier(record, source, engine, env)

    pairs = list(zip(records, sources, strict=True))
    warn_if_random(env, pairs)
    result = lib.compare(image, [(r, loader(r, s)) for r, s in pairs], top, resize)
    if explain_to is not None:
        from cnncli import gradcam, overlays
        from cnncli.engines import keras_model

        top1 = [run.predictions[0].index for run in result.runs]
        models = [(r, functools.partial(keras_model, r, s, env)) for r, s in pairs]
        explanations = gradcam.explain_each(image, models, top1, resize)
        overlays.save(gradcam.comparison_montage(explanations), explain_to)
    emit(env, fmt, result.as_dict(), lambda: lib.render(result), lambda: lib.rows(result))


@app.command()
@guarded
def explain(
    ctx: typer.Context,
    image: Annotated[str, typer.Argument(metavar="IMAGE", help="One photo.")],
    arch: ArchOption = "resnet50",
    weights: WeightsOption = "imagenet",
    classes: Annotated[
        list[str] | None,
        typer.Option(
            "--class", "-c", metavar="CLASS", help="Class to explain: label, index or WordNet id."
        ),
    ] = None,
    top: Annotated[
        int,
        typer.Option(
            "--top", "-k", metavar="K", min=1, max=1000, help="Without --class: the top K."
        ),
    ] = 1,
    resize: ResizeOption = Resize.crop,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help="Overlay PNG (with --top K: OUT.png, OUT_2.png...).",
        ),
    ] = None,
    alpha: Annotated[
        float, typer.Option(metavar="A", min=0.0, max=1.0, help="Heatmap opacity.")
    ] = 0.5,
    fmt: FormatOption = Format.table,
) -> None:
    """Where the classifier looked: Grad-CAM heatmaps (always on Keras, for gradients)."""
    from cnncli import gradcam, labels
    from cnncli.engines import keras_model, warn_if_random
    from cnncli.loader import Weights
    from cnncli.progress import status

    env = environment(ctx)
    record, source = registry.get(arch), Weights.parse(weights)
    warn_if_random(env, [(record, source)])
    targets = [labels.resolve_class(query).index for query in classes or []]
    model = keras_model(record, source, env)
    with status(env, f"Grad-CAM with {record.name}"):
        explanations = gradcam.explain(model, record, image, targets, top, resize)
    saved = gradcam.save_overlays(explanations, output, alpha) if output else []
    emit(
        env,
        fmt,
        gradcam.document(str(source), explanations, saved),
        lambda: gradcam.render(explanations, saved),
        lambda: gradcam.rows(explanations, saved),
    )


@app.command()
@guarded
def summary(
    ctx: typer.Context,
    arch: Annotated[str, typer.Argument(metavar="ARCH", help="Architecture (`cnn models`).")],
    layers: Annotated[bool, typer.Option("--layers", help="Add the per-layer table.")] = False,
    fmt: FormatOption = Format.table,
) -> None:
    """An architecture's anatomy: parameters, compute and memory (no weights needed)."""
    from cnncli import anatomy
    from cnncli.loader import Weights, build
    from cnncli.progress import status

    env = environment(ctx)
    record = registry.get(arch)
    with status(env, f"building {record.name}"):
        result = anatomy.analyse(build(record, Weights("none")), record)
    emit(
        env,
        fmt,
        result.as_dict(layers),
        lambda: anatomy.render(result, layers),
        lambda: anatomy.rows(result),
    )


@app.command("models")
@guarded
def models_(ctx: typer.Context, fmt: FormatOption = Format.table) -> None:
    """List every architecture: input size, parameters, accuracy, weights size."""
    emit(environment(ctx), fmt, catalog.document(), catalog.render, catalog.rows)


@app.command()
@guarded
def bench(
    ctx: typer.Context,
    archs: ArchsOption = "resnet50,mobilenet_v2",
    engines: Annotated[
        str, typer.Option("--engine", "-e", metavar="ENGINE,...", help="Comma-separated.")
    ] = "keras,litert",
    batch: Annotated[int, typer.Option(metavar="N", min=1, help="Batch size for images/s.")] = 8,
    weights: WeightsOption = "imagenet",
    repeats: Annotated[int, typer.Option(metavar="N", min=1, help="Timed repeats per figure.")] = 5,
    photo: Annotated[
        str | None, typer.Option(metavar="FILE", help="Photo to time (default: generated).")
    ] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Time cold-process latency, warm latency and throughput per arch and engine."""
    from cnncli import bench as lib
    from cnncli.loader import Weights

    env = environment(ctx)
    records = [registry.get(name) for name in comma_list(archs, "--arch")]
    chosen = [Engine.parse(name) for name in comma_list(engines, "--engine")]
    results = lib.run(records, chosen, Weights.parse(weights),
                      env, Path(photo) if photo else None, batch, repeats)  # fmt: skip
    emit(env, fmt, lib.document(results), lambda: lib.render(results), lambda: lib.rows(results))


cache_app = typer.Typer(help="The compiled-model cache.", cls=PlainHelpGroup, no_args_is_help=True)
app.add_typer(cache_app, name="cache")


@cache_app.command("list")
@guarded
def cache_list(ctx: typer.Context, fmt: FormatOption = Format.table) -> None:
    """List cached compiled models: arch, weights, engine, size, age."""
    from cnncli import cache

    env = environment(ctx)
    entries = cache.ModelCache(env.cache_dir).entries()
    emit(
        env,
        fmt,
        cache.document(entries),
        lambda: cache.render(entries, env.cache_dir),
        lambda: cache.rows(entries),
    )


@cache_app.command("clear")
@guarded
def cache_clear(
    ctx: typer.Context,
    arch: Annotated[
        str | None, typer.Argument(metavar="ARCH", help="Only this architecture's entries.")
    ] = None,
) -> None:
    """Remove cached compiled models (all, or one architecture's) and what interrupted
    conversions left behind."""
    from cnncli import cache

    env = environment(ctx)
    name = registry.get(arch).name if arch else None
    removed, leftovers = cache.ModelCache(env.cache_dir).clear(name)
    freed = sum(entry.size for entry in removed)
    env.say(
        f"removed {len(removed)} cached models ({freed / 2**20:.1f} MB)"
        + (
            f" and {len(leftovers)} temporary file(s) of interrupted conversions"
            if leftovers
            else ""
        )
    )


def main() -> None:
    """Console-script entry point: the process's own environment, and the stop signals raised
    wherever the run is. SIGINT too when the parent left it ignored (a script's `cnn ... &`):
    a signal someone sends on purpose must stop the run."""
    env = Environment.from_process()
    for number in STOP_SIGNALS:
        signal.signal(number, Interrupted.handler)
    app(obj=env)
