"""Reproduce the speed figures of cnncli on this machine, in one run, and write RESULTS.md.

    python benchmarks/run.py [--repeats 3] [--out benchmarks/RESULTS.md]

Offline and self-contained: the weights are seeded random files written here (timing does not
depend on their values), labels come from the package, photos from sample_images/ (and
../shared/photos when present). Every figure is a median over fresh processes or repeats.

(a) the plain Keras script (benchmarks/keras_script.py), a fresh process per photo;
(b) `cnn classify` as a fresh process per photo, compiled-model cache warm;
(c) `cnn compare` with its four default architectures against four runs of (a);
(d) images/s over 64 photos per engine, decoding included, batch 16;
(e) the photo-library stream against the model alone (benchmarks/stream.py);
(f) peak memory over 1,000 and 10,000 images (benchmarks/memory.py). It runs first, while this
    process is small: a child's peak RSS starts from its parent's.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import memory  # noqa: E402  (benchmarks/memory.py)
import stream  # noqa: E402  (benchmarks/stream.py)

from cnncli import registry  # noqa: E402
from cnncli.bench import machine  # noqa: E402
from cnncli.choices import Engine, Resize  # noqa: E402
from cnncli.engines import open_classifier  # noqa: E402
from cnncli.env import Environment  # noqa: E402
from cnncli.inputs import Entry  # noqa: E402
from cnncli.loader import Weights, build  # noqa: E402
from cnncli.networks import RegistryNetwork  # noqa: E402
from cnncli.pipeline import classify_entries  # noqa: E402
from cnncli.timing import warm_median  # noqa: E402

SINGLE = ("resnet50", "mobilenet_v2")
TARGET = 5.0


def timed(command: list[str], env: dict[str, str]) -> float:
    """Wall time of one fresh process, start to exit."""
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=env, timeout=1800)
    return time.perf_counter() - start


def median_over(commands: list[list[str]], env: dict[str, str], repeats: int) -> float:
    return statistics.median(timed(c, env) for c in commands for _ in range(repeats))


def keras_script(arch: str, weights: Path, photo: Path) -> list[str]:
    """(a): the plain Keras script on one photo."""
    script = ROOT / "benchmarks" / "keras_script.py"
    return [sys.executable, str(script), arch, str(weights), str(photo)]


def cnn(*arguments: object) -> list[str]:
    return [sys.executable, "-m", "cnncli", *map(str, arguments)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    args = parser.parse_args()
    peak_memory = memory.measure(1000, 10000, "mobilenet_v2")
    with tempfile.TemporaryDirectory(prefix="cnncli-bench-") as folder:
        work = Path(folder)
        env = prepare_environment(work)
        weights = {
            name: seeded_weights(name, work) for name in dict.fromkeys(SINGLE + registry.COMPARED)
        }
        photos = sorted((ROOT / "sample_images").glob("*.jpg"))
        lines = header()
        lines += single_photo(weights, photos, env, args.repeats)
        lines += comparison(weights, photos[0], env, args.repeats)
        lines += throughput(weights, photos, Path(env["CNN_CACHE_DIR"]))
    lines += stream.measure(2000, "mobilenet_v2", 16, 3) + peak_memory
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


def single_photo(weights: dict[str, Path], photos: list[Path], env, repeats: int) -> list[str]:
    """(a) vs (b), per architecture: median seconds per photo, fresh processes."""
    lines = [
        "",
        "## (a) vs (b): one photo, fresh process",
        "",
        "| arch | (a) plain Keras script, s | (b) `cnn classify`, warm cache, s | speed-up |",
        "|---|---|---|---|",
    ]
    for arch in SINGLE:
        ours = [cnn("classify", p, "-a", arch, "-w", weights[arch]) for p in photos]
        timed(ours[0], env)  # converts once: the cache is warm from here on
        a = median_over([keras_script(arch, weights[arch], p) for p in photos], env, repeats)
        b = median_over(ours, env, repeats)
        lines.append(f"| {arch} | {a:.2f} | {b:.2f} | {a / b:.1f}x ({verdict(a / b)}) |")
        print(lines[-1], flush=True)
    return lines


def comparison(weights: dict[str, Path], photo: Path, env, repeats: int) -> list[str]:
    """(c): `cnn compare` with its default four against the plain script run four times."""
    ours = cnn("compare", photo, "-w", ",".join(str(weights[a]) for a in registry.COMPARED))
    timed(ours, env)  # converts the four once
    plain = sum(
        median_over([keras_script(a, weights[a], photo)], env, repeats) for a in registry.COMPARED
    )
    mine = median_over([ours], env, repeats)
    ratio = plain / mine
    lines = [
        "",
        f"## (c) `cnn compare` ({', '.join(registry.COMPARED)})",
        "",
        "| four runs of (a), s | `cnn compare`, warm cache, s | speed-up |",
        "|---|---|---|",
        f"| {plain:.2f} | {mine:.2f} | {ratio:.1f}x ({verdict(ratio)}) |",
    ]
    print(lines[-1], flush=True)
    return lines


def throughput(weights: dict[str, Path], photos: list[Path], cache: Path) -> list[str]:
    """(d): images/s over 64 photos per engine, decoding included: the median of 3 runs after
    a warm-up run."""
    lines = [
        "",
        "## (d) throughput over 64 photos (decoding included, batch 16)",
        "",
        "| arch | keras, images/s | litert, images/s | litert / keras |",
        "|---|---|---|---|",
    ]
    many = [Entry(str(photos[i % len(photos)])) for i in range(64)]
    for arch in SINGLE:
        rates = {}
        for engine in (Engine.keras, Engine.litert):
            source, env = Weights("file", weights[arch]), Environment(cache_dir=cache)
            network = RegistryNetwork(registry.get(arch), source)
            classifier = open_classifier(network, engine, env)
            run = functools.partial(classify_entries, classifier, many, 5, Resize.crop, 16)
            _, seconds = warm_median(run, 3)
            rates[engine] = len(many) / seconds
        ratio = rates[Engine.litert] / rates[Engine.keras]
        met = "met" if ratio >= 1 else "MISSED"
        lines.append(
            f"| {arch} | {rates[Engine.keras]:.1f} | {rates[Engine.litert]:.1f} | "
            f"{ratio:.2f} ({met}: >= 1) |"
        )
        print(lines[-1], flush=True)
    return lines


def prepare_environment(work: Path) -> dict[str, str]:
    """A private cache and KERAS_HOME holding the class index, so nothing needs the network."""
    keras_home = work / "keras"
    (keras_home / "models").mkdir(parents=True)
    shutil.copy(ROOT / "cnncli" / "data" / "imagenet_class_index.json", keras_home / "models")
    os.environ["CNN_CACHE_DIR"] = str(work / "cache")
    return {**os.environ, "KERAS_HOME": str(keras_home), "CNN_CACHE_DIR": str(work / "cache")}


def seeded_weights(name: str, work: Path) -> Path:
    path = work / f"{name}.weights.h5"
    build(registry.get(name), Weights("none")).save_weights(path)
    return path


def header() -> list[str]:
    info = machine()
    return [
        "# Benchmark results",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}, "
        f"{info['platform']}.",
        "Reproduce: `python benchmarks/run.py` (see benchmarks/README.md).",
    ]


def verdict(ratio: float) -> str:
    return f"{'met' if ratio >= TARGET else 'MISSED'} (>= {TARGET:.0f}x)"


if __name__ == "__main__":
    main()
