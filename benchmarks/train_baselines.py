"""What `cnn train` is measured against, on a real data set and the real weights.

    pip install -e ".[bench]"
    python benchmarks/make_dataset.py /tmp/digits
    python benchmarks/train_baselines.py /tmp/digits [--weights PATH] [--guide-epochs 10]
        [--output benchmarks/TRAIN.md]

MobileNet-0.25 (224 px) with the real ImageNet weights from ../shared/models, on the class
folders `make_dataset.py` writes, split 80/20 per class by `datasets.discover` (seed 0: the split
`cnn train` makes). Every image is decoded and preprocessed by the code `cnn classify` runs
(`features.pixel_batches`). Rows:

- floor: scikit-learn logistic regression (features standardised) on the frozen network's
  global-average-pooled features;
- Keras guide: the "Transfer learning & fine-tuning" guide's end-to-end script as written
  (frozen base called with training=False, RandomFlip + RandomRotation(0.1), pooling, dropout,
  Dense logits, Adam 1e-3, `fit` on the decoded images held in memory) for --guide-epochs
  (the guide's 20 take most of an hour on 2 cores);
- `cnn train` with its default options, as a user runs it (a fresh process, wall time);
- the head on the frozen base with augmentation off, on features cached once vs recomputed
  from the files each epoch, 3 epochs each: the ratio of their epoch times after the first.
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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cnncli import datasets, features, registry, training  # noqa: E402
from cnncli.choices import Resize  # noqa: E402
from cnncli.engines import keras_forward  # noqa: E402
from cnncli.loader import Weights  # noqa: E402
from cnncli.tf_runtime import import_keras  # noqa: E402

WEIGHTS = ROOT.parent / "shared" / "models" / "mobilenet_v1_0.25_224_imagenet.weights.h5"
ARCH = registry.get("mobilenet_0.25")


@dataclass
class Row:
    """One line of the table."""

    method: str
    top1: float
    seconds: float
    epochs: str = ""

    def markdown(self) -> str:
        return f"| {self.method} | {self.top1:.1%} | {self.seconds:.0f} | {self.epochs} |"


def floor(dataset: datasets.Dataset, weights: Weights) -> Row:
    """Logistic regression on the frozen network's pooled features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    started = time.perf_counter()
    tm = training.TransferModel.of(ARCH, training.transfer_model(ARCH, weights, 2))
    forward = keras_forward(tm.features)
    train, val = (
        features.extract(part, ARCH, Resize.crop, 32, forward)
        for part in (dataset.train, dataset.val)
    )
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    classifier.fit(train.x[:, 0], train.y)
    top1 = classifier.score(val.x[:, 0], val.y)
    return Row("floor: logistic regression on frozen pooled features", top1, _since(started))


def pixels_of(samples: tuple[datasets.Sample, ...]) -> tuple[np.ndarray, np.ndarray]:
    """All images decoded and preprocessed as `cnn classify` does, in memory."""
    parts = [
        (pixels, [s.label for s in kept])
        for kept, pixels, _ in features.pixel_batches(samples, ARCH, Resize.crop, 64)
    ]
    return np.concatenate([p for p, _ in parts]), np.concatenate([y for _, y in parts])


def keras_guide(dataset: datasets.Dataset, path: Path, epochs: int) -> Row:
    """The guide's script, head phase: frozen base, augmentation in the model, `fit`."""
    keras = import_keras()
    import tensorflow as tf

    started = time.perf_counter()
    keras.utils.set_random_seed(0)
    (train_x, train_y), (val_x, val_y) = pixels_of(dataset.train), pixels_of(dataset.val)
    train_ds = tf.data.Dataset.from_tensor_slices((train_x, train_y))
    train_ds = train_ds.shuffle(len(train_y), seed=0).batch(32).prefetch(10)
    val_ds = tf.data.Dataset.from_tensor_slices((val_x, val_y)).batch(32).prefetch(10)
    full = keras.applications.MobileNet(alpha=0.25, weights=str(path), input_shape=(224, 224, 3))
    base_model = keras.Model(full.input, full.get_layer("conv_pw_13_relu").output)
    base_model.trainable = False
    augmentation = keras.Sequential(
        [keras.layers.RandomFlip("horizontal"), keras.layers.RandomRotation(0.1)]
    )
    inputs = keras.Input(shape=(224, 224, 3))
    x = base_model(augmentation(inputs), training=False)
    x = keras.layers.Dropout(0.2)(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, keras.layers.Dense(len(dataset.classes))(x))
    model.compile(
        optimizer=keras.optimizers.Adam(),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy()],
    )
    history = model.fit(train_ds, epochs=epochs, validation_data=val_ds, verbose=0)
    top1 = history.history["val_sparse_categorical_accuracy"][-1]
    return Row("Keras guide script, head (`fit`)", top1, _since(started), str(epochs))


def cnn_train(data: Path, weights: Path) -> Row:
    """`cnn train` with default options, a fresh process, timed from start to exit."""
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "cnncli", "train", str(data), "-o", f"{folder}/model"]
        command += ["-a", ARCH.name, "-w", str(weights), "-f", "json"]
        started = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
        seconds = _since(started)
    [model] = json.loads(done.stdout)["models"]
    epochs = f"{model['epochs']} (best {model['best_epoch']})"
    return Row("`cnn train` defaults (augmentation on)", model["val_top1"], seconds, epochs)


def epoch_ratio(dataset: datasets.Dataset, weights: Weights) -> tuple[float, float, float]:
    """(median seconds of epochs 2-3 recomputed, the same cached, largest val-loss gap)."""
    runs = []
    for cache in (True, False):
        import_keras().utils.set_random_seed(0)
        model = training.transfer_model(ARCH, weights, len(dataset.classes))
        options = training.Options(epochs=3, augment=False, cache=cache, patience=3)
        trainer = training.Trainer(training.TransferModel.of(ARCH, model), dataset, options, True)
        trainer.run()
        runs.append(trainer.progress.history)
    cached, plain = (statistics.median(e.seconds for e in run[1:]) for run in runs)
    gap = max(abs(a.val_loss - b.val_loss) for a, b in zip(*runs, strict=True))
    return plain, cached, gap


def _since(started: float) -> float:
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="class folders from make_dataset.py")
    parser.add_argument("--weights", type=Path, default=WEIGHTS)
    parser.add_argument("--guide-epochs", type=int, default=10)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "TRAIN.md")
    args = parser.parse_args()
    weights = Weights("file", args.weights)
    dataset = datasets.discover(args.data)
    rows = []
    for run in (
        lambda: floor(dataset, weights),
        lambda: cnn_train(args.data, args.weights),
        lambda: keras_guide(dataset, args.weights, args.guide_epochs),
    ):
        rows.append(run())
        print(rows[-1].markdown(), flush=True)
    plain, cached, gap = epoch_ratio(dataset, weights)
    write(args, dataset, rows, (plain, cached, gap))


def write(
    args: argparse.Namespace,
    dataset: datasets.Dataset,
    rows: list[Row],
    epochs: tuple[float, float, float],
) -> None:
    """The table and the epoch-time ratio, printed and written to --output."""
    plain, cached, gap = epochs
    command = f"python benchmarks/train_baselines.py {args.data} --guide-epochs {args.guide_epochs}"
    lines = [
        "# Training baselines (issue 11)",
        "",
        "Written by `benchmarks/train_baselines.py` (its docstring says what each row runs):",
        "",
        f"    python benchmarks/make_dataset.py {args.data}",
        f"    {command}",
        "",
        "Times are wall-clock on a 2-core machine shared with other work "
        f"(load {os.getloadavg()[0]:.1f} at the end), so they are provisional.",
        "",
        f"Data: `{args.data.name}`, {len(dataset.classes)} classes, {len(dataset.train)} train / "
        f"{len(dataset.val)} val images (seed 0, 20% per class). MobileNet-0.25, real weights.",
        "",
        "| method | val top-1 | wall s | epochs |",
        "|---|---|---|---|",
        *(row.markdown() for row in rows),
        "",
        f"Epoch time with the head on the frozen base, recomputed from the files / cached "
        f"features (epochs 2-3): {plain:.2f} s / {cached:.2f} s = {plain / cached:.0f}x. Largest "
        f"per-epoch val-loss difference between the two: {gap:.1e}.",
    ]
    print("\n".join(lines))
    args.output.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
