"""Issue 13: how near does `cnn classify --ray` on a local cluster come to the local pipeline,
and what would 10 million images on N machines take?

    python benchmarks/cluster.py [--images 2000] [--arch mobilenet_v2] [--rounds 2]

Writes `--images` photo-like 640x480 JPEGs (`stream.write_photos`), a random-weights model and
its LiteRT conversion in a private cache, starts a local Ray instance with 2 CPUs (127.0.0.1,
its own temp dir), then alternates for `--rounds` rounds:

- local: images/s of `pipeline.stream` over the folder (this process, decoding threads);
- ray: `cluster.write_parts` into a fresh folder, what `cnn classify --ray -o DIR/` runs: a
  whole run from the moment the dataset is built (a fresh actor pool per run, as each command
  starts one, and the model loaded in each actor), split into the time to the first part and
  the rate after it. The first run on the fresh instance (its workers starting) is reported
  apart from the later ones, which are what a cluster that is already up gives each command.

Each in-process run also reports the whole machine's CPU-seconds (/proc/stat), Ray's worker
processes and daemons included: on two cores, what Ray spends beyond the local run is time.

Then, as a user sees it, whole `cnn classify DIR` processes with and without `--ray ADDRESS`
(the instance already up), timed by the wall clock: start, model from the cache, run, exit.

Then what bounds a large run besides the workers, measured here: the listing rate of one read
task (one per source argument), the bytes per image that cross the object store (its name in a
listed block; the results stay in the model actor that writes its part), and the driver's share
(one row per part). From these it prints the scaling table for 10 million images, on paper:
per-CPU rate x CPUs, against those limits.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "benchmarks"))

from stream import stream_rate, write_photos  # noqa: E402

from cnncli import cluster, parts, registry  # noqa: E402
from cnncli.choices import Engine, Format  # noqa: E402
from cnncli.engines import Classifier, flatbuffer, open_classifier  # noqa: E402
from cnncli.env import Environment  # noqa: E402
from cnncli.inputs import Entry, Inputs  # noqa: E402
from cnncli.loader import Weights, build  # noqa: E402
from cnncli.networks import RegistryNetwork  # noqa: E402

#: The run the table is for, and the machines it is laid out on.
TARGET = 10_000_000
MACHINES = (1, 10, 100)
CORES = 16


def machine_cpu() -> float:
    """CPU-seconds the whole machine has spent (/proc/stat: user, nice, system), so a run's
    cost includes Ray's worker processes and daemons, not only this process's."""
    with open("/proc/stat") as stat:
        user, nice, system = (int(n) for n in stat.readline().split()[1:4])
    return (user + nice + system) / os.sysconf("SC_CLK_TCK")


def pipeline_rate(classifier: Classifier, folder: Path, batch: int) -> tuple[float, float]:
    """images/s of the local pipeline over `folder`, and the machine's CPU-seconds for it."""
    spent = machine_cpu()
    return stream_rate(classifier, folder, batch), machine_cpu() - spent


def command_rate(folder: Path, model: list[str], env: dict[str, str], *extra: str) -> float:
    """images/s of a whole `cnn classify DIR` process (start, model from the cache, run, exit),
    by the wall clock: what a user waits for, with or without `--ray`."""
    command = [sys.executable, "-m", "cnncli", "classify", str(folder), *model, *extra]
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True)
    return len(list(folder.iterdir())) / (time.perf_counter() - start)


def ray_rate(folder: Path, plan: cluster.Plan, model: bytes, out: Path) -> tuple[float, ...]:
    """A whole `write_parts` run into the fresh folder `out`: images/s overall, seconds to the
    first part, images/s after it, and the machine's CPU-seconds for it."""
    start, spent = time.perf_counter(), machine_cpu()
    first, opening, done = 0.0, 0, 0
    sources = cluster.Sources((str(folder),))
    with parts.opened(out, Format.jsonl, False, plan.tag) as destination:
        for part in cluster.write_parts(sources, plan, model, destination):
            if not first:
                first, opening = time.perf_counter(), part.images
            done += part.images
    end = time.perf_counter()
    steady = (done - opening) / (end - first) if end > first and done > opening else 0.0
    return done / (end - start), first - start, steady, machine_cpu() - spent


def listing_rate(folder: Path) -> float:
    """Names/s one read task lists (`cluster.entries`, which `inputs` walks for local paths)."""
    start = time.perf_counter()
    count = sum(1 for _ in cluster.entries(Inputs((str(folder),))))
    return count / (time.perf_counter() - start)


def name_bytes(folder: Path) -> float:
    """Bytes per image through the object store: its name in a listed block."""
    names = sorted(str(p) for p in folder.iterdir())[:100]
    return cluster.entries_table([Entry(n) for n in names], None, pyarrow).nbytes / len(names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--arch", default="mobilenet_v2")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="cnnray-") as work:
        measure(Path(work), args.images, registry.get(args.arch), args.batch, args.rounds)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


def measure(work: Path, images: int, arch: registry.Arch, batch: int, rounds: int) -> None:
    folder = work / "photos"
    write_photos(folder, images)
    path = work / "model.weights.h5"
    build(arch, Weights("none")).save_weights(path)
    weights = Weights("file", path)
    network, env = RegistryNetwork(arch, weights), Environment(cache_dir=work / "cache")
    local = open_classifier(network, Engine.litert, env)
    part_size = max(16, images // 20)
    plan = cluster.Plan(network, local.tag, local.precision, batch_size=batch, part_size=part_size)
    runs: dict[str, list[tuple[float, ...]]] = {"local": [], "ray": []}
    commands: dict[str, list[float]] = {"local": [], "ray": []}
    child = {**os.environ, "CNN_CACHE_DIR": str(work / "cache"), "RAY_AUTH_MODE": "token"}
    model = ["-a", arch.name, "-w", str(path), "-e", "litert", "-f", "jsonl"]
    with cluster.connected(num_cpus=2, temp_dir=work / "ray") as address:  # (print: /dev/null)
        for number in range(1, rounds + 1):
            runs["local"].append(pipeline_rate(local, folder, batch))
            runs["ray"].append(ray_rate(folder, plan, flatbuffer(local), work / f"out-{number}"))
        for number in range(1, rounds + 1):
            out = work / f"command-{number}"
            commands["local"].append(command_rate(folder, model, child, "-o", f"{out}.jsonl"))
            ray = ("--ray", address, "-o", f"{out}/")
            commands["ray"].append(command_rate(folder, model, child, *ray))
    for number, (mine, theirs) in enumerate(zip(runs["local"], runs["ray"], strict=True), 1):
        print(f"round {number}: local {mine[0]:.1f}, ray {theirs[0]:.1f} images/s")
    local_rate = statistics.median(r[0] for r in runs["local"])
    print(f"{images} JPEGs 640x480, {arch.name}, batch {batch}, 2 CPUs:")
    local_cpu = statistics.median(r[1] for r in runs["local"])
    print(f"  local {local_rate:6.1f} images/s (median of {rounds}), {local_cpu:.1f} CPU-s")
    later = runs["ray"][1:]
    for name, chosen in (("first run", runs["ray"][:1]), (f"later runs ({len(later)})", later)):
        if not chosen:
            continue
        overall, opening, steady, cpu = (statistics.median(r[i] for r in chosen) for i in range(4))
        print(
            f"  ray, {name}: {overall:6.1f} images/s ({overall / local_rate:.0%} of local); "
            f"first part after {opening:.1f} s, then {steady:.1f} images/s; {cpu:.1f} CPU-s"
        )
    alone, spread = statistics.median(commands["local"]), statistics.median(commands["ray"])
    print(
        f"  whole commands (median of {rounds}): cnn classify DIR {alone:.1f} images/s, with "
        f"--ray ADDRESS -o DIR/ {spread:.1f} images/s ({spread / alone:.0%} of local)"
    )
    steady = statistics.median(r[2] for r in runs["ray"])
    paper(steady / 2, listing_rate(folder), name_bytes(folder), plan.part_size)


def paper(per_cpu: float, listed: float, name: float, part: int) -> None:
    """The scaling table for `TARGET` images, from the figures measured here."""
    print(f"per CPU (steady) {per_cpu:.1f} images/s; one read task lists {listed:,.0f} names/s;")
    print(f"object store per image: {name:.0f} B of name (results are written where they are")
    print(f"made); the driver gets one row per part of {part} images. For {TARGET:,} images:")
    print(f"  listing in one task (one source argument): {TARGET / listed / 60:.1f} min")
    print(f"  names through the object store: {TARGET * name / 1e9:.1f} GB in all")
    print(f"| machines x {CORES} CPUs | images/s | time | listing needed (one task) |")
    print("|---|---|---|---|")
    for machines in MACHINES:
        rate = per_cpu * machines * CORES
        print(
            f"| {machines} | {rate:,.0f} | {TARGET / rate / 60:,.0f} min | "
            f"{rate / listed:.0%} of its rate |"
        )


if __name__ == "__main__":
    main()
