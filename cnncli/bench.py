"""`cnn bench`: how long a person waits, per model (architecture or trained) and engine, on this
machine.

Three figures, each the median of repeats after a warm-up: the cold-process latency (spawning
`cnn classify` on one photo until it exits: imports, loading, first pass, labels), the warm
per-image latency, and images/s at a batch size. The machine is part of the result.

Cold processes measure what a user waits for on the second run: the compiled model already in
the cache. `--weights none` is never cached, so the random weights are saved once to a file and
measured like any weights file, their conversion kept in a cache of the benchmark's own.
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

from cnncli.choices import Engine
from cnncli.engines import Classifier, open_classifier
from cnncli.env import Environment
from cnncli.images import load_array
from cnncli.loader import Weights
from cnncli.networks import Network, RegistryNetwork
from cnncli.output import CsvRows
from cnncli.progress import status
from cnncli.timing import warm_median


@dataclass(frozen=True)
class Measurement:
    """One architecture on one engine."""

    arch: str
    engine: str
    batch_size: int
    cold_process_s: float
    warm_ms_per_image: float
    images_per_s: float


def run(
    networks: Sequence[Network],
    engines: Sequence[Engine],
    env: Environment,
    photo: Path | None = None,
    batch: int = 8,
    repeats: int = 5,
) -> list[Measurement]:
    """Every figure for each model on each engine, timed on `photo` (else a generated 640x480
    JPEG). Cold processes share the cache the warm step filled, so they measure the warm-cache
    path. Off a terminal, a line says which step is running."""
    results = []
    with tempfile.TemporaryDirectory() as folder:
        image = photo or synthetic_photo(Path(folder) / "photo.jpg")
        for given in networks:
            network, run_env = timed_network(given, env, Path(folder))
            child_env = {**os.environ, "CNN_CACHE_DIR": str(run_env.cache_dir)}
            for engine in engines:
                classifier = open_classifier(network, engine, run_env)
                name = f"{network.record.name} on {classifier.engine}"
                with status(env, f"timing {name}: warm latency and throughput", announce=True):
                    warm, throughput = warm_figures(classifier, image, batch, repeats)
                with status(env, f"timing {name}: {repeats + 1} cold processes", announce=True):
                    command = cold_command(image, network, classifier.engine)
                    cold = cold_process_seconds(command, repeats, child_env)
                results.append(
                    Measurement(
                        network.record.name, classifier.engine, batch, cold, warm, throughput
                    )
                )
    return results


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


def cold_command(image: Path, network: Network, engine: str) -> list[str]:
    """The arguments of one cold process: `cnn classify` on one photo, JSON out."""
    return ["classify", str(image), *network.arguments(), "-e", engine, "-f", "json"]


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
) -> tuple[float, float]:
    """(ms per image at batch 1, images/s at `batch`) on already-decoded pixels."""
    pixels = load_array(photo, classifier.arch.input_size, classifier.network.resize)[None]
    single = warm_median(lambda: classifier.scores(pixels), repeats)[1]
    batched = np.repeat(pixels, batch, axis=0)
    per_batch = warm_median(lambda: classifier.scores(batched), repeats)[1]
    return single * 1000, batch / per_batch


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
    for column in ("arch", "engine", "cold process s", "warm ms/image", "batch size", "images/s"):
        table.add_column(column, justify="left" if column in ("arch", "engine") else "right")
    for r in results:
        table.add_row(
            r.arch,
            r.engine,
            f"{r.cold_process_s:.2f}",
            f"{r.warm_ms_per_image:.1f}",
            str(r.batch_size),
            f"{r.images_per_s:.1f}",
        )
    return [Text(f"{info['cpu']}, {info['cores']} cores, Python {info['python']}"), table]


def rows(results: Sequence[Measurement]) -> CsvRows:
    header = list(Measurement.__dataclass_fields__)
    return header, [list(asdict(r).values()) for r in results]
