"""How much faster int8 runs than float32: the speed table of issue 12.

    python benchmarks/int8_speed.py [--archs resnet50,mobilenet_v2] [--images 256] [--rounds 3]

For each architecture (default: resnet50, mobilenet_v2, efficientnet_b0, densenet121), with
random weights saved to a file (speed does not depend on their values) and a private
compiled-model cache, both models are converted and loaded in this one process, on each compiled
engine (LiteRT, and OpenVINO where installed: `pip install "cnncli[openvino]"`), then timed in
interleaved rounds so that a change in the machine's load hits all alike:

- model alone: images/s of `Classifier.scores` at the batch size on photos decoded beforehand;
- cnn classify DIR: images/s that `cnn classify DIR --precision P --format jsonl --output FILE`
  reports in its summary line (decoding included), as a fresh process.

The folder holds the real photos of ../shared/photos, repeated to `--images` files (in a
temporary folder; without ../shared, photo-like JPEGs made from sample_images/). Prints each
round, then a Markdown table of the medians and int8 / fp32, with the load average before and
after: figures taken while other processes share the cores say so.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import stream  # noqa: E402  (benchmarks/stream.py)

from cnncli import openvino_engine, registry  # noqa: E402
from cnncli.bench import machine  # noqa: E402
from cnncli.choices import Engine, Precision  # noqa: E402
from cnncli.engines import Classifier, open_classifier  # noqa: E402
from cnncli.env import Environment  # noqa: E402
from cnncli.inputs import is_image_name  # noqa: E402
from cnncli.loader import Weights, build  # noqa: E402
from cnncli.networks import RegistryNetwork  # noqa: E402

PHOTOS = ROOT.parent / "shared" / "photos"
ARCHS = ("resnet50", "mobilenet_v2", "efficientnet_b0", "densenet121")
PRECISIONS = (Precision.fp32, Precision.int8)
ENGINES = (Engine.litert, Engine.openvino) if openvino_engine.available() else (Engine.litert,)


def photo_folder(folder: Path, count: int) -> list[Path]:
    """`count` photos in `folder`: the real ones repeated, else generated ones."""
    real = sorted(p for p in PHOTOS.glob("*") if is_image_name(p)) if PHOTOS.is_dir() else []
    if not real:
        return stream.write_photos(folder, count)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in range(count):
        source = real[n % len(real)]
        paths.append(folder / f"{n:05d}-{source.name}")
        shutil.copyfile(source, paths[-1])
    return paths


def classify_command(
    folder: Path, arch: str, weights: Path, setting: tuple[Engine, Precision], batch: int
) -> list[str]:
    """The end-to-end run: `cnn classify DIR` on an engine in a precision, results to a file."""
    engine, precision = setting
    options = {
        "-a": arch,
        "-w": str(weights),
        "-e": engine.value,
        "--precision": precision.value,
        "--batch-size": str(batch),
        "--format": "jsonl",
        "--output": str(folder.parent / f"{engine.value}-{precision.value}.jsonl"),
    }
    arguments = [item for pair in options.items() for item in pair]
    return [sys.executable, "-m", "cnncli", "classify", str(folder), *arguments]


def measure(arch: str, images: int, batch: int, rounds: int, work: Path) -> dict[str, float]:
    """Median images/s of each engine and precision, model alone and through `cnn classify
    DIR`, keyed like "model litert int8" and "cli openvino fp32"."""
    folder = work / arch / "photos"
    photos = photo_folder(folder, images)
    weights = work / arch / "random.weights.h5"
    record = registry.get(arch)
    build(record, Weights("none")).save_weights(weights)
    env = Environment(cache_dir=work / arch / "cache")
    network = RegistryNetwork(record, Weights("file", weights))
    models: dict[tuple[Engine, Precision], Classifier] = {
        (e, p): open_classifier(network, e, env, p) for e in ENGINES for p in PRECISIONS
    }
    child = {**os.environ, "CNN_CACHE_DIR": str(env.cache_dir)}
    rates: dict[str, list[float]] = {}
    for round_ in range(1, rounds + 1):
        for (e, p), classifier in models.items():
            name = f"{e.value} {p.value}"
            model = stream.model_rate(classifier, photos, batch, images)
            rates.setdefault(f"model {name}", []).append(model)
            command = classify_command(folder, arch, weights, (e, p), batch)
            rates.setdefault(f"cli {name}", []).append(stream.cli_rate(command, child))
        print(f"{arch} round {round_}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in rates.items()))
    return {k: statistics.median(v) for k, v in rates.items()}


def table(results: dict[str, dict[str, float]], images: int, batch: int) -> list[str]:
    """The Markdown tables, model alone then end to end: images/s fp32 / int8 and their ratio
    on each engine, and int8 on each engine against the default engine's fp32 (LiteRT)."""
    lines = [f"Batch {batch}, {images} photos; images/s, median of interleaved rounds."]
    for kind, title in (("model", "model alone"), ("cli", "cnn classify DIR")):
        head = [f"{e.value} fp32 / int8 | int8 / fp32" for e in ENGINES]
        head += [f"{e.value} int8 / litert fp32" for e in ENGINES[1:]]
        lines += ["", f"{title}:", "", f"| arch | {' | '.join(head)} |"]
        lines.append("|---" * (1 + len(head) + len(ENGINES)) + "|")
        for arch, r in results.items():
            cells = []
            for e in ENGINES:
                fp32, int8 = r[f"{kind} {e.value} fp32"], r[f"{kind} {e.value} int8"]
                cells += [f"{fp32:.1f} / {int8:.1f}", f"{int8 / fp32:.2f}x"]
            base = r[f"{kind} litert fp32"]
            cells += [f"{r[f'{kind} {e.value} int8'] / base:.2f}x" for e in ENGINES[1:]]
            lines.append(f"| {arch} | {' | '.join(cells)} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default=",".join(ARCHS))
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    info = machine()
    before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="cnncli-int8-speed-") as work:
        results = {
            arch: measure(arch, args.images, args.batch, args.rounds, Path(work))
            for arch in args.archs.split(",")
        }
    after = os.getloadavg()[0]
    print(f"\nMachine: {info['cpu']}, {info['cores']} cores, Python {info['python']}.")
    print(f"Load average: {before:.1f} before, {after:.1f} after.\n")
    print("\n".join(table(results, args.images, args.batch)))


if __name__ == "__main__":
    main()
