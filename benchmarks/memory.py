"""Does memory stay flat however many images there are? Peak RSS over 1,000 and 10,000 images.

    python benchmarks/memory.py [--small 1000] [--large 10000] [--arch mobilenet_v2]

Writes `--large` small photo-like JPEGs (320x240) into one folder and hard-links the first
`--small` of them into another, with a seeded weights file and a private compiled-model cache
(both made by child processes, so this one never holds TensorFlow). Then runs, as fresh
processes,

    cnn classify FOLDER --format jsonl --output FILE -a ARCH -w WEIGHTS -e litert

on each folder and reads each child's peak resident set size from `os.wait4` (ru_maxrss).
A child starts as a fork of this process and keeps its peak across exec, which is why this
process stays small. Prints both peaks, their ratio (the target: at most 1.2) and each run's
summary line.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stream import write_photos  # noqa: E402  (benchmarks/stream.py)

from cnncli.bench import machine  # noqa: E402

SEEDED = """
import sys
from cnncli import registry
from cnncli.loader import Weights, build
build(registry.get(sys.argv[1]), Weights("none")).save_weights(sys.argv[2])
"""


def peak_rss(command: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Peak RSS in bytes of one child process (Linux gives ru_maxrss in KiB), and its last
    stderr line."""
    with tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        lines = err.read().strip().splitlines()
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {child.returncode}: {lines[-5:]}")
    return usage.ru_maxrss * 1024, lines[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=10000)
    parser.add_argument("--arch", default="mobilenet_v2")
    args = parser.parse_args()
    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}")
    with tempfile.TemporaryDirectory(prefix="cnncli-memory-") as folder:
        work = Path(folder)
        photos = write_photos(work / "large", args.large, (320, 240))
        (work / "small").mkdir()
        for photo in photos[: args.small]:
            os.link(photo, work / "small" / photo.name)
        weights = work / f"{args.arch}.weights.h5"
        subprocess.run([sys.executable, "-c", SEEDED, args.arch, str(weights)], check=True)
        env = {**os.environ, "CNN_CACHE_DIR": str(work / "cache")}

        def command(images: Path) -> list[str]:
            return [sys.executable, "-m", "cnncli", "classify", str(images), "-a", args.arch,
                    "-w", str(weights), "-e", "litert", "--format", "jsonl",
                    "--output", str(work / "out.jsonl")]  # fmt: skip

        peak_rss(command(work / "small"), env)  # converts the model into the cache
        print(f"command: cnn {' '.join(command(work / 'FOLDER')[3:])}")
        peaks = {}
        for name, count in (("small", args.small), ("large", args.large)):
            peaks[name], summary = peak_rss(command(work / name), env)
            print(f"{count:>6,} images: peak RSS {peaks[name] / 2**20:.1f} MiB  ({summary})")
        ratio = peaks["large"] / peaks["small"]
        print(f"{args.large:,} / {args.small:,} images: peak RSS ratio {ratio:.3f} "
              "(target: at most 1.2)")  # fmt: skip


if __name__ == "__main__":
    main()
