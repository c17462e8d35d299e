"""`cnn bench`: how long a person waits, per model (architecture or trained), engine and
precision, on this machine.

Three figures, each the median of repeats after a warm-up: the cold-process latency (spawning
`cnn classify` on one photo until it exits: imports, loading, first pass, labels), the warm
per-image latency, and images/s at a batch size. The machine is part of the result.

Cold processes measure what a user waits for on the second run: the compiled model already in
the cache. `--weights none` is never cached, so the random weights are saved once to a file and
measured like any weights file, their conversion kept in a cache of the benchmark's own.

With `--precision fp32,int8` each engine that can run int8 (LiteRT) is timed in both, and the
int8 rows say how often their top-1 matched float32's on the images timed, beside the speed.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from rich import box
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from cnncli.choices import Engine, Precision
from cnncli.engines import Classifier, check_precision, open_classifier
from cnncli.env import Environment
from cnncli.images import load_array
from cnncli.loader import Weights
from cnncli.networks import Network, RegistryNetwork
from cnncli.output import CsvRows
from cnncli.progress import status
from cnncli.timing import warm_median


@dataclass(frozen=True)
class Measurement:
    """One architecture on one engine in one precision."""

    arch: str
    engine: str
    precision: str
    batch_size: int
    cold_process_s: float
    warm_ms_per_image: float
    images_per_s: float
    #: The compiled model file's size; None on Keras.
    model_bytes: int | None
    #: int8 rows: the share of the timed images whose top-1 equals float32's on the same engine
    #: (None without a float32 row to compare with, and on float32 rows).
    top1_agreement: float | None = None


@dataclass(frozen=True)
class Setting:
    """One way to run a model that bench times: an engine, in a precision."""

    engine: Engine
    precision: Precision
    calibrate: str | None = None


def settings(
    engines: Sequence[Engine], precisions: Sequence[Precision], calibrate: str | None
) -> list[Setting]:
    """Every engine in every precision it can run (int8 is LiteRT's alone: Keras is left out of
    int8, unless it is all that was asked for, which is refused as `classify` refuses it)."""
    if Precision.int8 not in precisions:
        check_precision(engines[0], Precision.fp32, calibrate)  # --calibrate without int8
    chosen = [
        Setting(engine, precision, calibrate if precision is Precision.int8 else None)
        for engine in engines
        for precision in precisions
        if not (precision is Precision.int8 and engine is Engine.keras)
    ]
    if not chosen:  # int8 on Keras alone
        check_precision(Engine.keras, Precision.int8, calibrate)
    return chosen


def run(
    networks: Sequence[Network],
    runs: Sequence[Setting],
    env: Environment,
    photo: Path | None = None,
    batch: int = 8,
    repeats: int = 5,
) -> list[Measurement]:
    """Every figure for each model in each setting, timed on `photo` (else a generated 640x480
    JPEG). Cold processes share the cache the warm step filled, so they measure the warm-cache
    path. Off a terminal, a line says which step is running."""
    results = []
    with tempfile.TemporaryDirectory() as folder:
        image = photo or synthetic_photo(Path(folder) / "photo.jpg")
        for given in networks:
            network, run_env = timed_network(given, env, Path(folder))
            timing = Timing(image, batch, repeats, env, run_env)
            results += with_agreement([timing.measure(network, s) for s in runs])
    return results


@dataclass(frozen=True)
class Timing:
    """What every measurement of a run shares: the photo, the batch, the repeats, where the
    steps are announced (`env`) and the environment the models load in (`run_env`)."""

    image: Path
    batch: int
    repeats: int
    env: Environment
    run_env: Environment

    def measure(self, network: Network, setting: Setting) -> tuple[Measurement, np.ndarray]:
        """`network` in `setting`: its figures, and its top-1 class for each image timed."""
        classifier = open_classifier(
            network, setting.engine, self.run_env, setting.precision, setting.calibrate
        )
        name = f"{network.record.name} on {classifier.engine} in {classifier.precision}"
        with status(self.env, f"timing {name}: warm latency and throughput", announce=True):
            warm, throughput, top1 = warm_figures(classifier, self.image, self.batch, self.repeats)
        with status(self.env, f"timing {name}: {self.repeats + 1} cold processes", announce=True):
            command = cold_command(self.image, network, classifier.engine, setting)
            child_env = {**os.environ, "CNN_CACHE_DIR": str(self.run_env.cache_dir)}
            cold = cold_process_seconds(command, self.repeats, child_env)
        figures = (self.batch, cold, warm, throughput, classifier.model_bytes)
        name = network.record.name
        return Measurement(name, classifier.engine, classifier.precision, *figures), top1


def with_agreement(measured: Sequence[tuple[Measurement, np.ndarray]]) -> list[Measurement]:
    """The measurements, each int8 one with the share of images whose top-1 equals that of
    float32 on the same engine, where float32 was timed too."""
    float32 = {m.engine: top1 for m, top1 in measured if m.precision == Precision.fp32.value}
    return [
        replace(m, top1_agreement=float(np.mean(top1 == float32[m.engine])))
        if m.precision == Precision.int8.value and m.engine in float32
        else m
        for m, top1 in measured
    ]


def timed_network(network: Network, env: Environment, folder: Path) -> tuple[Network, Environment]:
    """The network to time, and the environment whose cache it goes to: as given, except with
    random weights, saved to a file in `folder` (so a cold process loads the cached conversion
    instead of converting, as with real weights), cached in `folder` too."""
    if not network.random:
        return network, env
    name = network.record.name
    path = folder / f"{name}.weights.h5"
    with status(env, f"saving random weights of {name} for cold processes", announce=True):
        network.keras_model().save_weights(path)
    timed = RegistryNetwork(network.record, Weights("file", path))
    return timed, replace(env, cache_dir=folder / "cache")


def cold_command(image: Path, network: Network, engine: str, setting: Setting) -> list[str]:
    """The arguments of one cold process: `cnn classify` on one photo, JSON out, in the
    setting's precision."""
    precision = ["--precision", setting.precision.value]
    calibrate = ["--calibrate", setting.calibrate] if setting.calibrate else []
    arguments = [*network.arguments(), "-e", engine, "-f", "json", *precision, *calibrate]
    return ["classify", str(image), *arguments]


def machine() -> dict[str, object]:
    """CPU model, cores and software versions, so figures can be compared across machines."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            model = next(line.split(":", 1)[1].strip() for line in info if "model name" in line)
    except (OSError, StopIteration):
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def cold_process_seconds(arguments: Sequence[str], repeats: int, env: dict[str, str]) -> float:
    """Median wall time of `python -m cnncli ARGUMENTS` as a fresh process (warm cache)."""
    command = [sys.executable, "-m", "cnncli", *arguments]

    def spawn() -> None:
        subprocess.run(command, check=True, capture_output=True, env=env, timeout=900)

    return warm_median(spawn, repeats)[1]


def warm_figures(
    classifier: Classifier, photo: Path, batch: int, repeats: int
) -> tuple[float, float, np.ndarray]:
    """(ms per image at batch 1, images/s at `batch`, the top-1 class of each image of the
    batch) on already-decoded pixels."""
    pixels = load_array(photo, classifier.arch.input_size, classifier.network.resize)[None]
    single = warm_median(lambda: classifier.scores(pixels), repeats)[1]
    batched = np.repeat(pixels, batch, axis=0)
    scores, per_batch = warm_median(lambda: classifier.scores(batched), repeats)
    return single * 1000, batch / per_batch, np.asarray(scores).argmax(axis=1)


def synthetic_photo(path: Path) -> Path:
    """A 640x480 JPEG of smooth colour gradients, for timing when no photo is given."""
    from PIL import Image

    y, x = np.mgrid[0:480, 0:640]
    rgb = np.stack([x * 255 // 639, y * 255 // 479, (x + y) * 255 // 1118], axis=-1)
    Image.fromarray(rgb.astype(np.uint8)).save(path, quality=90)
    return path


def document(results: Sequence[Measurement]) -> dict[str, object]:
    return {"machine": machine(), "results": [asdict(r) for r in results]}


def render(results: Sequence[Measurement]) -> list[RenderableType]:
    info = machine()
    table = Table(box=box.SIMPLE_HEAD)
    columns = ("arch", "engine", "precision", "cold process s", "warm ms/image", "batch size")
    for column in (*columns, "images/s", "model MB", "top-1 = fp32"):
        table.add_column(column, justify="left" if column in columns[:3] else "right")
    for r in results:
        table.add_row(
            r.arch,
            r.engine,
            r.precision,
            f"{r.cold_process_s:.2f}",
            f"{r.warm_ms_per_image:.1f}",
            str(r.batch_size),
            f"{r.images_per_s:.1f}",
            "-" if r.model_bytes is None else f"{r.model_bytes / 2**20:.1f}",
            "-" if r.top1_agreement is None else f"{r.top1_agreement:.0%}",
        )
    return [Text(f"{info['cpu']}, {info['cores']} cores, Python {info['python']}"), table]


def rows(results: Sequence[Measurement]) -> CsvRows:
    header = list(Measurement.__dataclass_fields__)
    return header, [list(asdict(r).values()) for r in results]
