"""Does the streaming pipeline run at the model's speed? Decoding must hide behind inference.

    python benchmarks/stream.py [--images 2000] [--arch mobilenet_v2] [--batch 16] [--rounds 3]

Writes `--images` JPEGs of 640x480 (crops of sample_images/ resized, with sensor-like noise, so
their sizes and decoding cost are those of photos), a seeded weights file and a private
compiled-model cache, all in a temporary folder. Then, alternating for `--rounds` rounds:

- model: images/s of `Classifier.scores` on already-decoded tensors at the batch size;
- stream: images/s of `pipeline.stream` over the files (discovery, decoding, inference);
- cli: images/s that `cnn classify DIR --format jsonl --output FILE` reports in its summary
  line (the run itself, after the model is loaded), as a fresh process.

Prints each round, then a RESULTS.md section (`benchmarks/run.py` includes it): the medians,
stream/model as the figure to compare with 90%, and where the time goes: CPU milliseconds per
image of the model and of decoding, the bound they set when the model alone keeps every core
busy, and the same model on one thread (a core left free for decoding) with and without the
stream around it.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cnncli import litert, registry  # noqa: E402
from cnncli.bench import machine  # noqa: E402
from cnncli.choices import Resize  # noqa: E402
from cnncli.engines import (  # noqa: E402
    Classifier,
    Engine,
    open_classifier,
)
from cnncli.env import Environment  # noqa: E402
from cnncli.images import load_array  # noqa: E402
from cnncli.inputs import Inputs  # noqa: E402
from cnncli.loader import Weights, build  # noqa: E402
from cnncli.networks import RegistryNetwork  # noqa: E402
from cnncli.pipeline import stream  # noqa: E402


def write_photos(folder: Path, count: int, size: tuple[int, int] = (640, 480)) -> list[Path]:
    """`count` photo-like JPEGs: random crops of the sample photos, resized, plus noise."""
    rng = np.random.default_rng(0)
    sources = [Image.open(p).convert("RGB") for p in sorted((ROOT / "sample_images").glob("*.jpg"))]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        source = sources[i % len(sources)]
        width, height = source.size
        w, h = int(width * rng.uniform(0.6, 1.0)), int(height * rng.uniform(0.6, 1.0))
        left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
        view = source.crop((left, top, left + w, top + h)).resize(size, Image.BILINEAR)
        noisy = np.asarray(view, np.float32) + rng.normal(0, 4, (size[1], size[0], 3))
        path = folder / f"photo_{i:06d}.jpg"
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def model_rate(classifier: Classifier, photos: list[Path], batch: int, images: int) -> float:
    """images/s of the forward pass alone, on tensors decoded beforehand."""
    size = classifier.arch.input_size
    decoded = np.stack([load_array(p, size, Resize.crop) for p in photos[: batch * 4]])
    batches = [decoded[i : i + batch] for i in range(0, len(decoded), batch)]
    classifier.scores(batches[0])
    start = time.perf_counter()
    for i in range(images // batch):
        classifier.scores(batches[i % len(batches)])
    return (images // batch) * batch / (time.perf_counter() - start)


def cpu_ms(run: Callable[[], object], images: int) -> float:
    """CPU time (all threads of this process) per image of `run`, in milliseconds."""
    before = os.times()
    run()
    after = os.times()
    return (after.user - before.user + after.system - before.system) / images * 1000


def stream_rate(classifier: Classifier, folder: Path, batch: int) -> float:
    """images/s of the library's stream over the folder, discovery to top-5 labels."""
    start = time.perf_counter()
    done = sum(
        len(b) for b in stream(classifier, Inputs((str(folder),)).entries(), 5, Resize.crop, batch)
    )
    return done / (time.perf_counter() - start)


def cli_rate(command: list[str], env: dict[str, str]) -> float:
    """images/s from the summary line of a `cnn classify` process."""
    proc = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    return float(re.findall(r"\(([\d.]+) images/s\)", proc.stderr)[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--arch", default="mobilenet_v2")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}")
    print("\n".join(measure(args.images, args.arch, args.batch, args.rounds)))


def measure(images: int, arch: str, batch: int, rounds: int) -> list[str]:
    """Run the comparison, printing each round, and return its RESULTS.md section."""
    with tempfile.TemporaryDirectory(prefix="cnncli-stream-") as work:
        folder = Path(work) / "photos"
        photos = write_photos(folder, images)
        kb = sum(p.stat().st_size for p in photos) / len(photos) / 1e3
        print(f"{len(photos)} JPEGs of 640x480, {kb:.0f} KB on average, in {folder}")
        weights = Path(work) / f"{arch}.weights.h5"
        record = registry.get(arch)
        build(record, Weights("none")).save_weights(weights)
        cache = Path(work) / "cache"
        network = RegistryNetwork(record, Weights("file", weights))
        classifier = open_classifier(network, Engine.litert, Environment(cache_dir=cache))
        env = {**os.environ, "CNN_CACHE_DIR": str(cache)}
        command = [
            sys.executable,
            "-m",
            "cnncli",
            "classify",
            str(folder),
            "-a",
            arch,
            "-w",
            str(weights),
            "-e",
            "litert",
            "--batch-size",
            str(batch),
            "--format",
            "jsonl",
            "--output",
            str(Path(work) / "out.jsonl"),
        ]
        print(f"engine {classifier.engine}, batch {batch}; cli: {' '.join(command[1:])}")
        rates: dict[str, list[float]] = {"model": [], "stream": [], "cli": []}
        for round_ in range(1, rounds + 1):
            rates["model"].append(model_rate(classifier, photos, batch, images))
            rates["stream"].append(stream_rate(classifier, folder, batch))
            rates["cli"].append(cli_rate(command, env))
            print(f"round {round_}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in rates.items()))
        median = {k: statistics.median(v) for k, v in rates.items()}
        lines = table(median, f"{images:,} JPEGs of 640x480, {arch}, batch {batch}", rounds)
        return [*lines, *where_the_time_goes(classifier, photos, folder, cache, batch)]


def table(median: dict[str, float], what: str, rounds: int) -> list[str]:
    """The RESULTS.md table: each run's median images/s and its share of the model's."""
    lines = [
        "",
        f"## (e) photo library: {what}",
        "",
        f"Images/s, median of {rounds} rounds; the target is at least 90% of the model's own "
        "speed on already-decoded tensors.",
        "",
        "| run | images/s | share of the model's |",
        "|---|---|---|",
        f"| model alone, decoded tensors | {median['model']:.1f} | 100% |",
    ]
    for name, label in (
        ("stream", "library stream (`pipeline.stream`)"),
        ("cli", "`cnn classify DIR -f jsonl -o FILE`"),
    ):
        share = median[name] / median["model"]
        met = "met" if share >= 0.9 else "MISSED"
        lines.append(f"| {label} | {median[name]:.1f} | {share:.1%} ({met}: >= 90%) |")
    return lines


def where_the_time_goes(
    classifier: Classifier, photos: list[Path], folder: Path, cache: Path, batch: int
) -> list[str]:
    """CPU per image of the model and of decoding, and the stream with a one-thread model."""
    size, count = classifier.arch.input_size, min(len(photos), 400)
    model = cpu_ms(lambda: model_rate(classifier, photos, batch, count), count + batch * 4)
    decode = cpu_ms(lambda: [load_array(p, size, Resize.crop) for p in photos[:count]], count)
    bound = model / (model + decode)
    [path] = cache.glob(f"*{litert.SUFFIX}")
    single = Classifier(
        classifier.arch, classifier.weights, litert.Runner(path, threads=1), litert.NAME
    )
    alone = model_rate(single, photos, batch, len(photos))
    streamed = stream_rate(single, folder, batch)
    return [
        "",
        f"Where the time goes: the model costs {model:.1f} ms of CPU per image and "
        f"decoding {decode:.1f} ms. When the model alone keeps every core busy, decoding "
        f"can only take cores from it: the stream can reach at most {bound:.1%} of the "
        f"model's speed. With the model on one thread (a core left for decoding) it runs "
        f"{alone:.1f} images/s alone and {streamed:.1f} in the stream: "
        f"{streamed / alone:.1%}.",
    ]


if __name__ == "__main__":
    main()
