"""Does memory stay flat however many images there are? Peak RSS over 1,000 and 10,000 images.

    python benchmarks/memory.py [--small 1000] [--large 10000] [--arch mobilenet_v2]

Writes `--large` small photo-like JPEGs (320x240) into one folder and hard-links the first
`--small` of them into another, with a seeded weights file and a private compiled-model cache
(both made by child processes, so this one never holds TensorFlow). Then runs, as fresh
processes,

    cnn classify FOLDER --format jsonl --output FILE -a ARCH -w WEIGHTS -e litert

on each folder and reads each child's peak resident set size from `os.wait4` (ru_maxrss).
A child starts as a fork of this process and keeps its peak across exec, which is why this
process stays small. Prints a RESULTS.md section (`benchmarks/run.py` includes it): both peaks,
each run's summary line and their ratio (the target: at most 1.2).
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
    print("\n".join(measure(args.small, args.large, args.arch)))


def measure(small: int, large: int, arch: str) -> list[str]:
    """Peak RSS of `cnn classify` over both folders; returns the RESULTS.md section."""
    with tempfile.TemporaryDirectory(prefix="cnncli-memory-") as folder:
        work = Path(folder)
        photos = write_photos(work / "large", large, (320, 240))
        (work / "small").mkdir()
        for photo in photos[:small]:
            os.link(photo, work / "small" / photo.name)
        weights = work / f"{arch}.weights.h5"
        subprocess.run([sys.executable, "-c", SEEDED, arch, str(weights)], check=True)
        env = {**os.environ, "CNN_CACHE_DIR": str(work / "cache")}

        def command(images: Path) -> list[str]:
            return [
                sys.executable,
                "-m",
                "cnncli",
                "classify",
                str(images),
                "-a",
                arch,
                "-w",
                str(weights),
                "-e",
                "litert",
                "--format",
                "jsonl",
                "--output",
                str(work / "out.jsonl"),
            ]

        peak_rss(command(work / "small"), env)  # converts the model into the cache
        lines = [
            "",
            f"## (f) photo library: peak memory, {arch}, JPEGs of 320x240",
            "",
            f"`cnn {' '.join(command(work / 'FOLDER')[3:]).replace(folder, 'TMP')}`, "
            "peak RSS of the process; "
            "the target is at most 1.2x from 1,000 to 10,000 images.",
            "",
            "| images | peak RSS, MiB | summary line |",
            "|---|---|---|",
        ]
        peaks = []
        for count, name in ((small, "small"), (large, "large")):
            peak, summary = peak_rss(command(work / name), env)
            peaks.append(peak)
            lines.append(f"| {count:,} | {peak / 2**20:.1f} | {summary} |")
            print(lines[-1], flush=True)
    ratio = peaks[1] / peaks[0]
    met = "met" if ratio <= 1.2 else "MISSED"
    return [*lines, "", f"Ratio {large:,} / {small:,} images: {ratio:.3f} ({met}: <= 1.2)."]


if __name__ == "__main__":
    main()
