"""How much faster int8 runs than float32: the speed table of issue 12.

    python benchmarks/int8_speed.py [--archs resnet50,mobilenet_v2] [--images 256] [--rounds 3]

For each architecture (default: resnet50, mobilenet_v2, efficientnet_b0, densenet121), with
random weights saved to a file (speed does not depend on their values) and a private
compiled-model cache, both models are converted and loaded in this one process, then timed in
interleaved rounds so that a change in the machine's load hits both alike:

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

from cnncli import registry  # noqa: E402
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
    folder: Path, arch: str, weights: Path, precision: Precision, batch: int
) -> list[str]:
    """The end-to-end run: `cnn classify DIR` on LiteRT, results to a file."""
    options = {
        "-a": arch,
        "-w": str(weights),
        "-e": "litert",
        "--precision": precision.value,
        "--batch-size": str(batch),
        "--format": "jsonl",
        "--output": str(folder.parent / f"{precision.value}.jsonl"),
    }
    arguments = [item for pair in options.items() for item in pair]
    return [sys.executable, "-m", "cnncli", "classify", str(folder), *arguments]


def measure(arch: str, images: int, batch: int, rounds: int, work: Path) -> dict[str, float]:
    """Median images/s of each precision, model alone and through `cnn classify DIR`."""
    folder = work / arch / "photos"
    photos = photo_folder(folder, images)
    weights = work / arch / "random.weights.h5"
    record = registry.get(arch)
    build(record, Weights("none")).save_weights(weights)
    env = Environment(cache_dir=work / arch / "cache")
    models: dict[Precision, Classifier] = {
        p: open_classifier(RegistryNetwork(record, Weights("file", weights)), Engine.litert, env, p)
        for p in PRECISIONS
    }
    child = {**os.environ, "CNN_CACHE_DIR": str(env.cache_dir)}
    rates: dict[str, list[float]] = {}
    for round_ in range(1, rounds + 1):
        for p, classifier in models.items():
            model = stream.model_rate(classifier, photos, batch, images)
            rates.setdefault(f"model {p.value}", []).append(model)
            command = classify_command(folder, arch, weights, p, batch)
            rates.setdefault(f"cli {p.value}", []).append(stream.cli_rate(command, child))
        print(f"{arch} round {round_}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in rates.items()))
    return {k: statistics.median(v) for k, v in rates.items()}


def table(results: dict[str, dict[str, float]], images: int, batch: int) -> list[str]:
    """The Markdown table: images/s fp32 / int8 and their ratio, model alone and end to end."""
    lines = [
        f"Batch {batch}, LiteRT, {images} photos; images/s, median of interleaved rounds.",
        "",
        "| arch | model alone fp32 / int8 | int8 / fp32 "
        "| cnn classify DIR fp32 / int8 | int8 / fp32 |",
        "|---|---|---|---|---|",
    ]
    for arch, r in results.items():
        alone, cli = (r["model fp32"], r["model int8"]), (r["cli fp32"], r["cli int8"])
        lines.append(
            f"| {arch} | {alone[0]:.1f} / {alone[1]:.1f} | {alone[1] / alone[0]:.2f}x "
            f"| {cli[0]:.1f} / {cli[1]:.1f} | {cli[1] / cli[0]:.2f}x |"
        )
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
