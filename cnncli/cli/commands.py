"""The `cnn` commands: each parses its options, calls the library (`cnncli.api` and the modules
behind it) and hands the result to `output.emit`. No logic lives here, and nothing here imports
NumPy, Pillow or TensorFlow before a command runs, so `--help` is instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnncli import registry
from cnncli.choices import Engine, Format, Resize
from cnncli.cli.app import CnnGroup, app, environment, guarded
from cnncli.cli.options import (
    ArchArgument,
    ArchOption,
    ArchsOption,
    BatchSizeOption,
    EngineOption,
    EnginesOption,
    FormatOption,
    MaybeArchOption,
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


@app.command()
@guarded
def classify(
    ctx: typer.Context,
    images: Annotated[
        list[str] | None,
        typer.Argument(metavar="IMAGE", help="Image files, directories or globs."),
    ] = None,
    arch: ArchOption = "resnet50",
    weights: WeightsOption = "imagenet",
    engine: EngineOption = Engine.auto,
    top: TopOption = 5,
    resize: ResizeOption = Resize.crop,
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
    """Label photos with an ImageNet classifier; jsonl and csv stream as they go."""
    from cnncli import parts, pipeline, results_file
    from cnncli.engines import open_classifier, warn_if_random
    from cnncli.inputs import Inputs
    from cnncli.loader import Weights

    env = environment(ctx)
    record, source = registry.get(arch), Weights.parse(weights)
    if not images and files_from is None:
        raise UsageError("name the images to classify (files, directories, globs, --files-from)")
    into_parts = parts.is_folder(output)
    parts.check(output, into_parts, fmt, ray is not None)
    if resume and (output is None or fmt not in (*results_file.STREAMED, Format.parquet)):
        raise UsageError(
            "--resume needs --output FILE and --format jsonl or csv (or DIR/ and parquet, --ray)"
        )
    warn_if_random(env, [(record, source)])
    inputs = Inputs(tuple(images or ()), recursive, files_from)
    inputs.check()
    destination = Path(output) if output is not None else None
    job = pipeline.Job(inputs, source, top, resize, batch_size, fmt, destination, resume, verbose)
    if ray is None:
        tally = pipeline.run_job(env, job, lambda: open_classifier(record, source, engine, env))
    else:
        from cnncli import cluster

        on = cluster.Cluster.parse(ray, engine, verbose, into_parts, part_size)
        tally = on.run(env, job, lambda: open_classifier(record, source, Engine.litert, env))
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
    engine: EngineOption = Engine.auto,
    top: TopOption = 5,
    resize: ResizeOption = Resize.crop,
    fmt: FormatOption = Format.table,
    montage: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="Also write a Grad-CAM montage to FILE (PNG), a panel per architecture.",
        ),
    ] = None,
) -> None:
    """Several architectures side by side on the same photo."""
    from cnncli import api, comparison, overlays

    env = environment(ctx)
    names, sources = comma_list(archs, "--arch"), comma_list(weights, "--weights")
    result = api.compare(image, names, sources, engine, top, resize, env)
    if montage is not None:
        overlays.save(api.montage(image, result, resize, env), montage)
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
    arch: ArchOption = "resnet50",
    weights: WeightsOption = "imagenet",
    classes: Annotated[
        str | None,
        typer.Option(
            "--class",
            "-c",
            metavar="CLASS,...",
            help="Classes to explain, comma-separated: labels, indices or WordNet ids.",
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
    explanations = api.explain(image, arch, weights, targets, top, resize, env)
    saved = gradcam.save_overlays(explanations, output, alpha) if output else []
    emit(
        env,
        fmt,
        gradcam.document(weights, explanations, saved),
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
    archs: ArchsOption = "resnet50,mobilenet_v2",
    engines: EnginesOption = "keras,litert",
    weights: WeightsOption = "imagenet",
    batch_size: BatchSizeOption = 8,
    repeats: Annotated[int, typer.Option(metavar="N", min=1, help="Timed repeats per figure.")] = 5,
    photo: Annotated[
        Path | None, typer.Option(metavar="FILE", help="Photo to time (default: generated).")
    ] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Time cold-process latency, warm latency and throughput per arch and engine."""
    from cnncli import bench as lib
    from cnncli.loader import Weights

    env = environment(ctx)
    records = [registry.get(name) for name in comma_list(archs, "--arch")]
    chosen = [Engine.parse(name) for name in comma_list(engines, "--engine")]
    results = lib.run(records, chosen, Weights.parse(weights), env, photo, batch_size, repeats)
    emit(env, fmt, lib.document(results), lambda: lib.render(results), lambda: lib.rows(results))


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


def _arch_named(name: str | None, arch: str | None) -> str | None:
    """The architecture named as `ARCH` or as `--arch` (two spellings of one option)."""
    if name and arch and registry.get(name) != registry.get(arch):
        raise UsageError(f"ARCH '{name}' and --arch '{arch}' differ: give one architecture")
    return name or arch
