"""Measure int8 (full-integer post-training quantization) against float32 on the LiteRT engine.

    python benchmarks/int8.py [--archs vgg16,resnet50] [--skip-calibration] [--out FILE]

Writes benchmarks/INT8.md and prints it. For one architecture of every family (and ResNet-18):
(a) whether it converts to int8 (the error if not), conversion seconds, file sizes; (b) how
closely int8 follows float32 on the real photos (../shared/photos and sample_images); (c)
images/s at batch 16, both models in the same process, 2 threads. Then, with the real
MobileNet-0.25 ImageNet weights, which calibration set to use by default and how much it matters.

Only MobileNet-0.25 has real ImageNet weights offline (../shared/models); every other model has
seeded random weights (tests/conftest.py `seeded_model`: batch norms set on random pixels, the
classifier scaled so scores are not flat). The output marks each row with its weights.
Every architecture runs in a child process: a conversion that crashes or exhausts memory is a
row in the table, not the end of the run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import int8_report  # noqa: E402  (benchmarks/int8_report.py)
import numpy as np  # noqa: E402

from cnncli import litert, quantize, registry  # noqa: E402
from cnncli.bench import machine  # noqa: E402
from cnncli.errors import first_line  # noqa: E402
from cnncli.images import Resize, load_array  # noqa: E402
from cnncli.loader import Weights, build  # noqa: E402
from cnncli.preprocess import preprocess  # noqa: E402
from cnncli.tf_runtime import import_keras  # noqa: E402

SHARED = ROOT.parent / "shared"
PHOTOS = SHARED / "photos"
SAMPLES = ROOT / "sample_images"
REAL_WEIGHTS = SHARED / "models" / "mobilenet_v1_0.25_224_imagenet.weights.h5"
REAL = "mobilenet_0.25"
#: The large model on which the cost of more calibration samples is measured.
COST_ARCH = "resnet50"

#: One architecture per family; ResNet-18 besides (cnncli's own basic-block ResNet).
FAMILIES = (
    "vgg16",
    "resnet18",
    "resnet50",
    "resnet50_v2",
    "inception_v3",
    "xception",
    "mobilenet",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "densenet121",
    "nasnet_mobile",
    "efficientnet_b0",
    "efficientnet_v2_b0",
    "convnext_tiny",
)

#: The sample images' accepted labels (sample_images/LICENSES.md).
SAMPLE_LABELS = {
    "cat.jpg": [281, 282, 285],
    "coffee.jpg": [967, 968, 504],
    "grace_hopper.jpg": [652],
    "rocket.jpg": [657, 744, 812],
}

BATCH = 16
THREADS = 2
REPEATS = 5
#: Views of the evaluation photos (mirrored, shifted, zoomed) for a finer agreement figure
#: than 17 photos allow; drawn with another seed than any calibration set.
VIEWS = 8
VIEW_SEED = 1234
#: Standard deviation of a seeded model's logits over the classes for one photo (as in
#: tests/conftest.py `seeded_model`): top-1 probabilities of about 0.05-0.5, as trained models give.
SPREAD = 2.0


def expected() -> dict[str, list[int]]:
    return json.loads((PHOTOS / "expected.json").read_text(encoding="utf-8"))


def photo_paths() -> list[Path]:
    """The labelled photos, in expected.json's order (its keys, not the folder listing)."""
    return [PHOTOS / name for name in expected()]


def sample_paths() -> list[Path]:
    return [SAMPLES / name for name in SAMPLE_LABELS]


# ---- the measurement of one architecture (in a child process) ----------------------------------


def model_for(name: str) -> tuple[Any, str]:
    """The Keras model and which weights it has: the real ones for MobileNet-0.25, else seeded."""
    if name == REAL:
        return build(registry.get(name), Weights("file", REAL_WEIGHTS)), "real ImageNet"
    return seeded(name), "seeded"


def seeded(name: str) -> Any:
    """tests/conftest.py's seeded model, its classifier then set so that every class has the same
    mean logit over the sample images' calibration views, and the logits of one photo spread
    with a standard deviation of `SPREAD` about their mean.

    Without the first, a random network can give one class to every photo (its largest mean
    wins over what the photo changes), and agreement between int8 and float32 means nothing;
    without the second, removing those means leaves scores almost flat."""
    from tests.conftest import seeded_model

    model = seeded_model(name, seed=0)
    views = quantize.calibration_set(sample_paths(), registry.get(name), quantize.Recipe()).samples
    classifier = next(layer for layer in reversed(model.layers) if layer.weights)
    kernel, bias = classifier.weights[:2]
    features = import_keras().Model(model.inputs, classifier.input)
    inputs = np.concatenate([features(views[i : i + BATCH]) for i in range(0, len(views), BATCH)])
    logits = inputs.reshape(len(inputs), -1) @ kernel.numpy().reshape(-1, kernel.shape[-1])
    means = logits.mean(axis=0) + bias.numpy()
    scale = SPREAD / (logits + bias.numpy() - means).std(axis=1).mean()
    kernel.assign(kernel.numpy() * scale)
    bias.assign((bias.numpy() - means) * scale)
    return model


def pixels(arch: registry.Arch, paths: Sequence[Path]) -> np.ndarray:
    """The photos as the model takes them: evaluation crop, preprocessed."""
    size = arch.input_size
    photos = np.stack([load_array(path, size, Resize.crop) for path in paths])
    return preprocess(photos, arch.preprocessing)


def evaluation_views(arch: registry.Arch) -> np.ndarray:
    """`VIEWS` augmented views of each of the 17 photos (the calibration augmentations)."""
    paths = photo_paths() + sample_paths()
    recipe = quantize.Recipe(samples=VIEWS * len(paths), seed=VIEW_SEED)
    return quantize.calibration_set(paths, arch, recipe).samples


def timed(step: Callable[[], object], clock: Callable[[], float] = time.perf_counter) -> float:
    start = clock()
    step()
    return clock() - start


def measure(name: str, recipe: quantize.Recipe, folder: Path) -> dict[str, Any]:
    """(a), (b) and (c) for one architecture, calibrated on the sample images by `recipe`."""
    arch = registry.get(name)
    model, weights = model_for(name)
    row: dict[str, Any] = {"arch": name, "weights": weights, "family": arch.family}
    fp32, int8 = folder / f"{name}.tflite", folder / f"{name}.int8.tflite"
    row["fp32_convert_s"] = timed(lambda: litert.convert(model, fp32))
    calibration = quantize.calibration_set(sample_paths(), arch, recipe).samples
    try:
        row["int8_convert_s"] = timed(lambda: quantize.convert_int8(model, calibration, int8))
    except Exception as exc:
        row["error"] = conversion_error(exc)
        return row
    row["fp32_mb"], row["int8_mb"] = fp32.stat().st_size / 2**20, int8.stat().st_size / 2**20
    row.update(compare((litert.Runner(fp32, THREADS), litert.Runner(int8, THREADS)), arch))
    row.update(speed((fp32, int8), pixels(arch, photo_paths() + sample_paths())[:BATCH]))
    return row


def conversion_error(exc: BaseException) -> str:
    """The converter's own diagnosis: its first line that says `error`, else its first line."""
    lines = [line.strip() for line in str(exc).splitlines() if "error" in line.lower()]
    return (lines[0] if lines else first_line(exc))[:300]


def compare(runners: Sequence[litert.Runner], arch: registry.Arch) -> dict[str, Any]:
    """How closely int8 follows float32 on the 17 photos and their views; hits where labelled."""
    fp32, int8 = runners
    photos = pixels(arch, photo_paths())
    samples = pixels(arch, sample_paths())
    p32, p8 = (np.concatenate([run(photos), run(samples)]) for run in (fp32, int8))
    views = evaluation_views(arch)
    v32, v8 = (
        np.concatenate([run(views[i : i + BATCH]) for i in range(0, len(views), BATCH)])
        for run in (fp32, int8)
    )
    labels = list(expected().values())
    return {
        **fidelity(p32, p8),
        "views": len(views),
        "views_top1_agree": int((v32.argmax(1) == v8.argmax(1)).sum()),
        "fp32_hits": hits(p32[: len(labels)], labels),
        "int8_hits": hits(p8[: len(labels)], labels),
    }


def fidelity(p32: np.ndarray, p8: np.ndarray) -> dict[str, Any]:
    """Top-1 agreement, top-5 overlap and probability differences between the two models.

    `distinct_top1` says how many different classes float32 picks: with seeded weights a model
    that gives one class to every photo would agree with anything, so the figure shows whether
    agreement means something."""
    top5_32, top5_8 = (np.argsort(-p, axis=1)[:, :5] for p in (p32, p8))
    overlap = [len(set(a) & set(b)) / 5 for a, b in zip(top5_32, top5_8, strict=True)]
    difference = np.abs(p32.astype(np.float64) - p8)
    return {
        "images": len(p32),
        "top1_agree": int((p32.argmax(1) == p8.argmax(1)).sum()),
        "distinct_top1": len(set(p32.argmax(1).tolist())),
        "top5_overlap": float(np.mean(overlap)),
        "max_abs_diff": float(difference.max()),
        "mean_abs_diff": float(difference.mean()),
        "mean_tv": float(difference.sum(axis=1).mean() / 2),
        "nan": bool(np.isnan(p8).any()),
    }


def hits(scores: np.ndarray, labels: Sequence[Sequence[int]]) -> dict[str, int]:
    """Photos whose top-1, and whose top-5, holds an accepted label."""
    pairs = list(zip(np.argsort(-scores, axis=1)[:, :5].tolist(), labels, strict=True))
    return {
        "top1": sum(top5[0] in accepted for top5, accepted in pairs),
        "top5": sum(bool(set(top5) & set(accepted)) for top5, accepted in pairs),
    }


def speed(paths: Sequence[Path], batch: np.ndarray) -> dict[str, float]:
    """Images/s of both models at batch 16 on 2 threads (wall time), and the CPU time each
    spends per image on 1 thread: the figure other processes on the same cores disturb least
    (a busy machine slows the wall clock of both, and not always alike)."""
    wall = seconds_per_batch([litert.Runner(p, THREADS) for p in paths], batch, time.perf_counter)
    cpu = seconds_per_batch([litert.Runner(p, 1) for p in paths], batch, time.process_time)
    return {
        "fp32_ips": len(batch) / wall[0],
        "int8_ips": len(batch) / wall[1],
        "fp32_cpu_ms": cpu[0] * 1000 / len(batch),
        "int8_cpu_ms": cpu[1] * 1000 / len(batch),
    }


def seconds_per_batch(
    runners: Sequence[litert.Runner], batch: np.ndarray, clock: Callable[[], float]
) -> list[float]:
    """Median `clock` seconds of each runner on `batch`: one warm-up each, then `REPEATS`
    rounds that time the runners in turn, so that a change in load falls on all alike."""
    times: list[list[float]] = [[] for _ in runners]
    for runner in runners:
        runner(batch)
    for _ in range(REPEATS):
        for seconds, runner in zip(times, runners, strict=True):
            seconds.append(timed(lambda r=runner: r(batch), clock))
    return [statistics.median(s) for s in times]


# ---- the calibration study (in a child process) --------------------------------------------------


def calibration_sets(arch: registry.Arch) -> list[tuple[str, np.ndarray]]:
    """The candidate sets: the sample images (plain and augmented, several N and seeds), the
    evaluated photos themselves, and random noise."""
    samples, photos = sample_paths(), photo_paths()
    Recipe = quantize.Recipe

    def from_photos(paths: Sequence[Path], recipe: quantize.Recipe) -> np.ndarray:
        return quantize.calibration_set(paths, arch, recipe).samples

    noise = np.random.default_rng(0).uniform(0, 255, (64, arch.input_size, arch.input_size, 3))
    return [
        ("(i) 4 sample images, no augmentation (N=4)", from_photos(samples, Recipe(augment=False))),
        ("(i) 4 sample images, augmented, N=16", from_photos(samples, Recipe(samples=16))),
        *(
            (
                f"(i) 4 sample images, augmented, N=64, seed {seed}",
                from_photos(samples, Recipe(samples=64, seed=seed)),
            )
            for seed in (0, 1, 2)
        ),
        ("(i) 4 sample images, augmented, N=256", from_photos(samples, Recipe(samples=256))),
        ("(ii) the 13 photos themselves (N=13)", from_photos(photos, Recipe(augment=False))),
        ("(ii) the 13 photos, augmented, N=64", from_photos(photos, Recipe(samples=64))),
        ("(ii)+(i) 17 photos, augmented, N=64", from_photos(photos + samples, Recipe(samples=64))),
        (
            "(iii) uniform random noise, N=64",
            preprocess(noise.astype(np.float32), arch.preprocessing),
        ),
    ]


def calibration_study(folder: Path) -> list[dict[str, Any]]:
    """Each candidate set with the real MobileNet-0.25: fidelity to float32 and label hits."""
    arch = registry.get(REAL)
    model, _ = model_for(REAL)
    fp32 = folder / "fp32.tflite"
    litert.convert(model, fp32)
    rows = []
    for number, (label, calibration) in enumerate(calibration_sets(arch)):
        int8 = folder / f"int8-{number}.tflite"  # a new file: a loaded runner maps the old one
        seconds = timed(lambda c=calibration, i=int8: quantize.convert_int8(model, c, i))
        runners = litert.Runner(fp32, THREADS), litert.Runner(int8, THREADS)
        rows.append({"set": label, "convert_s": seconds, **compare(runners, arch)})
    return rows


def sample_count_study(folder: Path) -> list[dict[str, Any]]:
    """What N costs and buys on a large model: the seeded ResNet50 calibrated on the sample
    images with N = 4 (no augmentation), 16 and 64; conversion CPU seconds and fidelity."""
    arch = registry.get(COST_ARCH)
    model = seeded(COST_ARCH)
    fp32 = folder / "fp32.tflite"
    litert.convert(model, fp32)
    rows = []
    for recipe in (
        quantize.Recipe(augment=False),
        quantize.Recipe(samples=16),
        quantize.Recipe(samples=64),
    ):
        int8 = folder / f"int8-{recipe.samples}-{recipe.augment}.tflite"
        calibration = quantize.calibration_set(sample_paths(), arch, recipe).samples
        cpu = timed(
            lambda c=calibration, i=int8: quantize.convert_int8(model, c, i), time.process_time
        )
        runners = litert.Runner(fp32, THREADS), litert.Runner(int8, THREADS)
        rows.append({"samples": len(calibration), "cpu_s": cpu, **compare(runners, arch)})
    return rows


# ---- the parent: one child per measurement, then the Markdown ---------------------------------


def child(arguments: list[str], timeout: float) -> Any:
    """Run this script with `arguments` in a fresh process; its JSON answer, or the failure."""
    with tempfile.TemporaryDirectory(prefix="cnncli-int8-") as folder:
        answer = Path(folder) / "answer.json"
        command = [sys.executable, __file__, *arguments, "--answer", str(answer)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"no answer within {timeout:.0f} s"}
        if answer.is_file():
            return json.loads(answer.read_text(encoding="utf-8"))
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"child exited {done.returncode}: {tail[:300]}"}


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default=",".join((*FAMILIES, REAL)))
    parser.add_argument("--skip-calibration", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "INT8.md")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # child: one architecture
    parser.add_argument("--study", choices=["sets", "samples"], help=argparse.SUPPRESS)  # child
    parser.add_argument("--answer", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args()


def answer_as_child(args: argparse.Namespace) -> None:
    """In a child: do the one measurement asked for and write its JSON."""
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    with tempfile.TemporaryDirectory(prefix="cnncli-int8-") as folder:
        if args.study == "sets":
            result: Any = calibration_study(Path(folder))
        elif args.study == "samples":
            result = sample_count_study(Path(folder))
        else:
            result = measure(args.measure, quantize.Recipe(), Path(folder))
    args.answer.write_text(json.dumps(result), encoding="utf-8")


def main() -> None:
    args = parse()
    if args.answer is not None:
        answer_as_child(args)
        return
    started = time.perf_counter()
    rows = []
    for name in args.archs.split(","):
        print(f"measuring {name} ...", file=sys.stderr, flush=True)
        rows.append({"arch": name, **child(["--measure", name], timeout=3600)})
        print(int8_report.family_row(rows[-1]), file=sys.stderr, flush=True)
    studies = {}
    if not args.skip_calibration:
        for study in ("sets", "samples"):
            print(f"calibration study: {study} ...", file=sys.stderr, flush=True)
            studies[study] = child(["--study", study], timeout=3600)
    text = int8_report.markdown(rows, studies, machine(), time.perf_counter() - started)
    args.out.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
