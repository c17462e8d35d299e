"""The `cnn` commands: each parses its options, calls the library (`cnncli.api` and the modules
behind it) and hands the result to `output.emit`. No logic lives here, and nothing here imports
NumPy, Pillow or TensorFlow before a command runs, so `--help` is instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

# Typer's own Click (see app.py): whether an option was typed or took its default.
from typer.core import _click as click

from cnncli import registry
from cnncli.choices import Engine, Format, Precision
from cnncli.cli.app import CnnGroup, app, environment, guarded
from cnncli.cli.options import (
    ArchArgument,
    ArchOption,
    ArchsOption,
    BatchSizeOption,
    CalibrateOption,
    EngineOption,
    EnginesOption,
    FormatOption,
    MaybeArchOption,
    ModelOption,
    ModelsOption,
    PrecisionOption,
    PrecisionsOption,
    RayOption,
    ResizeOption,
    ResultsFormatOption,
    TopOption,
    WeightsListOption,
    WeightsOption,
    comma_list,
)
from cnncli.errors import ExitStatus, UsageError
from cnncli.output import emit

COMPARED = ",".join(registry.COMPARED)
BENCHED = ",".join(registry.BENCHED)


@app.command()
@guarded
def classify(
    ctx: typer.Context,
    images: Annotated[
        list[str] | None,
        typer.Argument(metavar="IMAGE", help="Image files, directories or globs."),
    ] = None,
    arch: ArchOption = registry.DEFAULT_ARCH,
    weights: WeightsOption = "imagenet",
    model: ModelOption = None,
    engine: EngineOption = Engine.auto,
    precision: PrecisionOption = Precision.fp32,
    calibrate: CalibrateOption = None,
    top: TopOption = 5,
    resize: ResizeOption = None,
    fmt: ResultsFormatOption = Format.table,
    batch_size: BatchSizeOption = 16,
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
        str | None,  # not a Path, which drops the slash of DIR/
        typer.Option(
            "--output",
            "-o",
            metavar="FILE|DIR/",
            help="Write the results to FILE (with --ray, DIR/: part files).",
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Skip the images --output already holds; append the rest."),
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help="List the files skipped in directories (--ray: Ray's lines)."
        ),
    ] = False,
    ray: RayOption = None,
    part_size: Annotated[
        int, typer.Option(metavar="N", min=1, help="Images per part file of --ray -o DIR/.")
    ] = 1000,
) -> None:
    """Label photos with an ImageNet classifier or a trained model; jsonl and csv stream as they
    go."""
    from cnncli import parts, pipeline, results_file
    from cnncli.engines import check_precision
    from cnncli.inputs import Inputs
    from cnncli.networks import named, warn_if_random

    env = environment(ctx)
    network = named(*_typed(ctx, arch=arch, weights=weights), model)
    if not images and files_from is None:
        raise UsageError("name the images to classify (files, directories, globs, --files-from)")
    into_parts = parts.is_folder(output)
    parts.check(output, into_parts, fmt, ray is not None)
    if resume and (output is None or fmt not in (*results_file.STREAMED, Format.parquet)):
        raise UsageError(
            "--resume needs --output FILE and --format jsonl or csv (or DIR/ and parquet, --ray)"
        )
    check_precision(engine, precision, calibrate)
    warn_if_random(env, [network])
    inputs = Inputs(tuple(images or ()), recursive, files_from)
    inputs.check()
    destination = Path(output) if output is not None else None
    job = pipeline.Job(
        inputs,
        network,
        engine,
        top,
        resize,
        batch_size,
        fmt,
        destination,
        resume,
        verbose,
        precision,
        calibrate,
    )
    if ray is None:
        tally = pipeline.run_job(env, job)
    else:
        from cnncli import cluster

        on = cluster.Cluster.parse(ray, engine, verbose, into_parts, part_size)
        tally = on.run(env, job)
    if tally.interrupted:
        raise tally.interrupted
    if tally.failed:
        raise typer.Exit(ExitStatus.FAILURE)


@app.command()
@guarded
def compare(
    ctx: typer.Context,
    image: Annotated[str, typer.Argument(metavar="IMAGE", help="One photo.")],
    archs: ArchsOption = COMPARED,
    weights: WeightsListOption = "imagenet",
    models: ModelsOption = None,
    engine: EngineOption = Engine.auto,
    precision: PrecisionOption = Precision.fp32,
    calibrate: CalibrateOption = None,
    top: TopOption = 5,
    resize: ResizeOption = None,
    fmt: FormatOption = Format.table,
    montage: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="Also write a Grad-CAM montage to FILE (PNG), a panel per architecture.",
        ),
    ] = None,
) -> None:
    """Several architectures (and trained models) side by side on the same photo."""
    from cnncli import api, comparison, overlays

    env = environment(ctx)
    names, sources = _typed(ctx, archs=archs, weights=weights)
    result = api.compare(
        image,
        comma_list(names, "--arch") if names is not None else None,
        comma_list(sources, "--weights") if sources is not None else None,
        engine,
        top,
        resize,
        env,
        models=comma_list(models, "--model") if models is not None else (),
        precision=precision,
        calibrate=calibrate,
    )
    if montage is not None:
        overlays.save(api.montage(image, result, env), montage)
    emit(
        env,
        fmt,
        result.as_dict(),
        lambda: comparison.render(result),
        lambda: comparison.rows(result),
    )


@app.command()
@guarded
def explain(
    ctx: typer.Context,
    image: Annotated[str, typer.Argument(metavar="IMAGE", help="One photo.")],
    arch: ArchOption = registry.DEFAULT_ARCH,
    weights: WeightsOption = "imagenet",
    model: ModelOption = None,
    classes: Annotated[
        str | None,
        typer.Option(
            "--class",
            "-c",
            metavar="CLASS,...",
            help="Classes to explain, comma-separated: labels, indices or (ImageNet) WordNet ids.",
        ),
    ] = None,
    top: Annotated[
        int,
        typer.Option(
            "--top", "-k", metavar="K", min=1, max=1000, help="Without --class: the top K."
        ),
    ] = 1,
    resize: ResizeOption = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help="Write the overlay to FILE (PNG; several classes: FILE, FILE_2, ...).",
        ),
    ] = None,
    alpha: Annotated[
        float, typer.Option(metavar="A", min=0.0, max=1.0, help="Heatmap opacity.")
    ] = 0.5,
    fmt: FormatOption = Format.table,
) -> None:
    """Where the classifier looked: Grad-CAM heatmaps (always on Keras, for gradients)."""
    from cnncli import api, gradcam

    env = environment(ctx)
    targets = comma_list(classes, "--class") if classes is not None else []
    given_arch, given_weights = _typed(ctx, arch=arch, weights=weights)
    explanations = api.explain(
        image, given_arch, given_weights, targets, top, resize, env, model=model
    )
    saved = gradcam.save_overlays(explanations, output, alpha) if output else []
    emit(
        env,
        fmt,
        gradcam.document(model or weights, explanations, saved),
        lambda: gradcam.render(explanations, saved),
        lambda: gradcam.rows(explanations, saved),
    )


@app.command()
@guarded
def summary(
    ctx: typer.Context,
    name: ArchArgument = None,
    arch: MaybeArchOption = None,
    layers: Annotated[bool, typer.Option("--layers", help="Add the per-layer table.")] = False,
    fmt: FormatOption = Format.table,
) -> None:
    """An architecture's anatomy: parameters, compute and memory (no weights needed)."""
    from cnncli import anatomy, api

    env = environment(ctx)
    chosen = _arch_named(name, arch)
    if chosen is None:
        raise UsageError("name the architecture: cnn summary -a ARCH (`cnn models` lists them)")
    result = api.summary(chosen, env)
    emit(
        env,
        fmt,
        result.as_dict(layers),
        lambda: anatomy.render(result, layers),
        lambda: anatomy.rows(result),
    )


@app.command()
@guarded
def models(ctx: typer.Context, fmt: FormatOption = Format.table) -> None:
    """List every architecture: input size, parameters, accuracy, weights size."""
    from cnncli import catalog

    emit(environment(ctx), fmt, catalog.document(), catalog.render, catalog.rows)


@app.command()
@guarded
def bench(
    ctx: typer.Context,
    archs: ArchsOption = BENCHED,
    engines: EnginesOption = "keras,litert",
    precisions: PrecisionsOption = "fp32",
    calibrate: CalibrateOption = None,
    weights: WeightsOption = "imagenet",
    models: ModelsOption = None,
    batch_size: BatchSizeOption = 8,
    repeats: Annotated[int, typer.Option(metavar="N", min=1, help="Timed repeats per figure.")] = 5,
    photo: Annotated[
        Path | None, typer.Option(metavar="FILE", help="Photo to time (default: generated).")
    ] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Time cold-process latency, warm latency and throughput per model, engine and precision."""
    from cnncli import bench as lib
    from cnncli.networks import several

    env = environment(ctx)
    names, source = _typed(ctx, archs=archs, weights=weights)
    networks = several(
        comma_list(names, "--arch") if names is not None else None,
        source,
        comma_list(models, "--model") if models is not None else (),
        default=registry.BENCHED,
    )
    chosen = [Engine.parse(name) for name in comma_list(engines, "--engine")]
    arithmetic = [Precision.parse(name) for name in comma_list(precisions, "--precision")]
    runs = lib.settings(chosen, arithmetic, calibrate)
    results = lib.run(networks, runs, env, photo, batch_size, repeats)
    emit(env, fmt, lib.document(results), lambda: lib.render(results), lambda: lib.rows(results))


@app.command()
@guarded
def evaluate(
    ctx: typer.Context,
    data: Annotated[
        str, typer.Argument(metavar="DATA", help="A folder holding a folder of photos per class.")
    ],
    model: ModelOption = None,
    arch: MaybeArchOption = None,
    weights: WeightsOption = "imagenet",
    engine: EngineOption = Engine.auto,
    precision: PrecisionOption = Precision.fp32,
    calibrate: CalibrateOption = None,
    resize: ResizeOption = None,
    batch_size: BatchSizeOption = 16,
    worst: Annotated[
        int, typer.Option(metavar="N", min=0, help="List the N most confident mistakes.")
    ] = 10,
    plot: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="Also draw the confusion matrix to FILE (PNG)."),
    ] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Measure a model on labelled photos: top-1/top-5, per-class precision, recall and F1,
    confusion matrix, worst mistakes. Class folders name a trained model's classes, or
    ImageNet's by WordNet id or label."""
    from cnncli import api, evaluation
    from cnncli.engines import check_precision

    env = environment(ctx)
    if model is None and arch is None:
        raise UsageError("name the model to evaluate: --model BUNDLE or --arch ARCH")
    [given] = _typed(ctx, weights=weights)
    if plot is not None:
        evaluation.check_plot(plot)
    check_precision(engine, precision, calibrate)
    result = api.evaluate(
        data,
        arch,
        given,
        engine,
        resize,
        batch_size,
        worst,
        env,
        model=model,
        precision=precision,
        calibrate=calibrate,
    )
    if plot is not None:
        evaluation.plot(result, plot)
    emit(
        env,
        fmt,
        result.as_dict(),
        lambda: evaluation.render(result),
        lambda: evaluation.rows(result),
    )
    if result.failed:
        raise typer.Exit(ExitStatus.FAILURE)


cache_app = typer.Typer(help="The compiled-model cache.", cls=CnnGroup, no_args_is_help=True)
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
    name: ArchArgument = None,
    arch: MaybeArchOption = None,
) -> None:
    """Remove cached compiled models (all, or one architecture's) and what interrupted
    conversions left behind."""
    from cnncli import cache

    env = environment(ctx)
    chosen = _arch_named(name, arch)
    only = registry.get(chosen).name if chosen else None
    removed, leftovers = cache.ModelCache(env.cache_dir).clear(only)
    env.say(cache.cleared(removed, leftovers))


def _typed(ctx: typer.Context, **options: str) -> list[str | None]:
    """Each option's value when the user typed it, None when it is its default: a default
    architecture or weights gives way to a trained model (`--model`), a typed one conflicts."""
    return [
        value if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT else None
        for name, value in options.items()
    ]


def _arch_named(name: str | None, arch: str | None) -> str | None:
    """The architecture named as `ARCH` or as `--arch` (two spellings of one option)."""
    if name and arch and registry.get(name) != registry.get(arch):
        raise UsageError(f"ARCH '{name}' and --arch '{arch}' differ: give one architecture")
    return name or arch


@app.command()
@guarded
def train(
    ctx: typer.Context,
    data: Annotated[
        Path,
        typer.Argument(
            metavar="DATA", help="A folder with a subfolder of images per class (or train/, val/)."
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            metavar="DIR",
            help="Folder for the trained model (several architectures: DIR/ARCH each).",
        ),
    ],
    archs: Annotated[
        str,
        typer.Option(
            "--arch",
            "-a",
            metavar="ARCH,...",
            help="Architectures (`cnn models`) or folders `cnn train` wrote (trained further), "
            "comma-separated.",
        ),
    ] = "mobilenet_v2",
    weights: WeightsListOption = "imagenet",
    epochs: Annotated[
        int, typer.Option(metavar="N", min=1, help="Most epochs of the head (early stopping).")
    ] = 100,
    fine_tune: Annotated[
        int, typer.Option(metavar="N", min=0, help="Epochs fine-tuning the top of the base.")
    ] = 0,
    patience: Annotated[
        int, typer.Option(metavar="N", min=1, help="Stop after N epochs without a lower val loss.")
    ] = 10,
    learning_rate: Annotated[
        float | None,
        typer.Option(
            metavar="RATE", min=0.0, help="Head's learning rate (default 1e-2; scratch 1e-3)."
        ),
    ] = None,
    augment: Annotated[
        bool, typer.Option(help="Small random rotations, zooms and shifts of training images.")
    ] = True,
    flip: Annotated[
        bool,
        typer.Option(
            "--flip", help="Add mirror images to the augmentation (photos; not text or digits)."
        ),
    ] = False,
    val_split: Annotated[
        float, typer.Option(metavar="F", help="Share of each class held out without a val/ folder.")
    ] = 0.2,
    seed: Annotated[int, typer.Option(metavar="N", help="Seed of the split and of training.")] = 0,
    resize: ResizeOption = None,
    batch_size: BatchSizeOption = 32,
    force: Annotated[
        bool,
        typer.Option("--force", help="Write into an existing --output that is not this run's."),
    ] = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Go on with the interrupted run in --output.")
    ] = False,
    fmt: FormatOption = Format.table,
) -> None:
    """Teach architectures your own classes; a leaderboard and a model folder each."""
    from cnncli import leaderboard, networks, train_run, training

    env = environment(ctx)
    options = training.Options(
        epochs=epochs,
        fine_tune=fine_tune,
        batch_size=batch_size,
        learning_rate=learning_rate,
        augment=augment,
        flip=flip,
        patience=patience,
        seed=seed,
    )
    (sources,) = _typed(ctx, weights=weights)
    models = tuple(
        networks.to_train(
            comma_list(archs, "--arch"),
            comma_list(sources, "--weights") if sources is not None else None,
        )
    )
    request = train_run.Request(data, models, output, options, val_split, force, resume, resize)
    outcomes = train_run.run(env, request)
    emit(
        env,
        fmt,
        leaderboard.document(data, outcomes),
        lambda: leaderboard.render(outcomes),
        lambda: leaderboard.rows(outcomes),
    )
