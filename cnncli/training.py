"""Teaching a registry network the user's own classes (`cnn train`): the model and its fitting.

The way the Keras transfer-learning guide teaches it: the network without its ImageNet head, a
new head (global average pooling, dropout, one softmax unit per class) trained with the base
frozen, then optionally the top of the base fine-tuned at a lower learning rate, BatchNorm kept
in inference mode. `--weights none` trains the whole network from scratch instead.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnncli import features
from cnncli.choices import Resize
from cnncli.datasets import Dataset, Sample
from cnncli.engines import keras_forward
from cnncli.errors import UsageError
from cnncli.features import Features
from cnncli.inputs import printable
from cnncli.loader import Weights, build
from cnncli.registry import Arch
from cnncli.tf_runtime import import_keras

#: The names of the layers the head adds: the saved model is the registry network's layers,
#: under their own names (so Grad-CAM finds the feature map as in the registry model), then
#: these three.
POOL, DROPOUT, CLASSES = "cnn_pool", "cnn_dropout", "cnn_classes"


@dataclass
class TransferModel:
    """A network under a new head, as the parts training needs, all sharing weights: `model`
    (pixels -> class probabilities, flat) is what is saved and served; `features` (pixels ->
    pooled features) and `head` (pooled features -> probabilities) are its two halves; `base`
    the layers below the pooling, which fine-tuning unfreezes from the top."""

    arch: Arch
    model: Any
    features: Any
    head: Any
    base: list[Any]

    @classmethod
    def of(cls, arch: Arch, model: Any) -> TransferModel:
        """The parts of a flat model with the head's layers (`transfer_model`, a bundle's)."""
        keras = import_keras()
        pool = model.get_layer(POOL)
        inputs = keras.Input(pool.output.shape[1:], name="features")
        head = keras.Model(inputs, model.get_layer(CLASSES)(model.get_layer(DROPOUT)(inputs)))
        features = keras.Model(model.input, pool.output)
        base = model.layers[1 : model.layers.index(pool)]
        return cls(arch, model, features, head, base)


def transfer_model(arch: Arch, weights: Weights, classes: int, dropout: float = 0.2) -> Any:
    """`arch` with `weights` (`loader.build`: its sources and their errors), cut where its
    ImageNet head begins, under a head for `classes` classes: a flat Keras model."""
    full = build(arch, weights)
    return with_head(full.input, pool_input(full), classes, dropout, f"{arch.name}_transfer")


def continued(model: Any, same_classes: bool, classes: int, dropout: float = 0.2) -> Any:
    """A trained model (a bundle's) to train further: whole, head included, when it was
    trained on the same classes; else its base, fine-tuned or not, under a new head."""
    if same_classes:
        return model
    return with_head(model.input, model.get_layer(POOL).input, classes, dropout, model.name)


def with_head(inputs: Any, feature_map: Any, classes: int, dropout: float, name: str) -> Any:
    """A flat model from `inputs` to a new head over `feature_map`."""
    layers = import_keras().layers
    x = layers.GlobalAveragePooling2D(name=POOL)(feature_map)
    x = layers.Dropout(dropout, name=DROPOUT)(x)
    x = layers.Dense(classes, activation="softmax", name=CLASSES)(x)
    return import_keras().Model(inputs, x, name=name)


def pool_input(model: Any) -> Any:
    """The feature map an ImageNet classifier's head pools (Flatten's input in VGG): where
    `include_top=False` ends. Cut from the whole classifier, so the weights come from the same
    files (and caches) `classify` loads; earlier global poolings are squeeze-and-excitation
    blocks, so the head's is the last."""
    layers = import_keras().layers
    pooling = (layers.GlobalAveragePooling2D, layers.Flatten)
    return [layer for layer in model.layers if isinstance(layer, pooling)][-1].input


def augmentation(seed: int, flip: bool = False) -> Any:
    """The augmentation: small rotations (up to 11 degrees), zooms and shifts (5%), and with
    `flip` horizontal mirroring (Keras's preprocessing layers). Mild, and no flip by default,
    because both were measured to cost accuracy on digits (benchmarks/TRAIN.md): a mirrored 2
    or 7 is no longer the same class, and neither is a digit shifted half out of the crop.
    Applied to preprocessed pixels, which it commutes with (a per-pixel affine map; borders are
    reflected, not filled)."""
    layers = import_keras().layers
    steps = [layers.RandomFlip("horizontal", seed=seed)] if flip else []
    steps += [
        layers.RandomRotation(0.03, seed=seed + 1),
        layers.RandomZoom(0.05, seed=seed + 2),
        layers.RandomTranslation(0.05, 0.05, seed=seed + 3),
    ]
    return import_keras().Sequential(steps, name="augment")


# --- Options, phases and the record of each epoch -------------------------------------------


@dataclass(frozen=True)
class Options:
    """How to train. The defaults were chosen by measurement (benchmarks/TRAIN.md): the head
    on cached features of each image and `views - 1` augmented views of it, a learning rate
    that converges in tens of epochs, early stopping on val loss."""

    epochs: int = 100  # of phase 1 (the head, or the whole network from scratch)
    fine_tune: int = 0  # epochs of phase 2; 0: none
    fine_tune_fraction: float = 0.3  # of the base's weighted layers, from the top
    batch_size: int = 32
    learning_rate: float | None = None  # phase 1; None: HEAD_RATE, or SCRATCH_RATE
    fine_tune_learning_rate: float = 1e-5
    dropout: float = 0.2
    augment: bool = True
    views: int = 5  # with augment: the image and 4 augmented views, featurised once
    flip: bool = False  # horizontal flips among the augmentations (not for text, digits)
    cache: bool = True  # phase 1 of a frozen base on cached features (off: recomputed)
    patience: int = 10
    resize: Resize = Resize.crop
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "resize": self.resize.value}


#: Adam's learning rate for a head on frozen features (fast: it is one dense layer), and for a
#: whole network from scratch (Keras's default).
HEAD_RATE, SCRATCH_RATE = 1e-2, 1e-3


@dataclass(frozen=True)
class Phase:
    """One stretch of training: what learns ("head", "fine-tune" or "scratch"), for up to how
    many epochs, at what learning rate."""

    name: str
    epochs: int
    learning_rate: float


def phases(options: Options, pretrained: bool) -> list[Phase]:
    """The head then (`fine_tune`) the top of the base; from scratch, the whole network."""
    if not pretrained:
        return [Phase("scratch", options.epochs, options.learning_rate or SCRATCH_RATE)]
    head = Phase("head", options.epochs, options.learning_rate or HEAD_RATE)
    tune = Phase("fine-tune", options.fine_tune, options.fine_tune_learning_rate)
    return [head, tune] if options.fine_tune else [head]


@dataclass(frozen=True)
class Epoch:
    """One epoch's metrics: its phase, its number in the phase (from 1), train and val."""

    phase: str
    epoch: int
    loss: float
    accuracy: float
    val_loss: float
    val_accuracy: float
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --- The run: phases of epochs, early stopping, the best epoch kept ---------------------------


class Listener:
    """What a run tells whoever watches it (the command's progress display). This one shows
    nothing: what the library gives a caller that asked for no display."""

    @contextmanager
    def extracting(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        """A step over `total` images (computing features); the callable hears of each batch's
        images."""
        yield lambda done: None

    @contextmanager
    def epoch(self, phase: Phase, epoch: int, images: int) -> Iterator[BatchDone]:
        """An epoch of up to `images` training images; the callable hears of each batch."""
        yield lambda images, loss, accuracy: None

    def finished(self, record: Epoch, best: bool) -> None:
        """An epoch ended, with `record`; `best`: its val loss is the lowest yet."""

    def skipped(self, path: str, why: str) -> None:
        """An image could not be used: it is left out of the run."""


#: Told after each training batch: images so far in the epoch, running loss and accuracy.
BatchDone = Callable[[int, float, float], None]


@dataclass
class Snapshot:
    """Values of some of a run's variables (by index in `Trainer.variables`) and of its
    optimizer's (in the optimizer's order): what is restored to go back to an epoch."""

    values: dict[int, np.ndarray]
    optimizer: list[np.ndarray] = dataclasses.field(default_factory=list)


@dataclass
class Progress:
    """Where a run is: the phase under way and the epochs finished in it, the history, the
    best epoch so far (lowest val loss over every phase) and the epochs since it improved, and
    the images left out (path -> why)."""

    phase: int = 0
    epochs: int = 0
    history: list[Epoch] = dataclasses.field(default_factory=list)
    best_loss: float = math.inf
    best: tuple[str, int] | None = None
    wait: int = 0
    failed: dict[str, str] = dataclasses.field(default_factory=dict)

    def best_epoch(self) -> Epoch | None:
        return next((e for e in self.history if (e.phase, e.epoch) == self.best), None)


@dataclass
class Checkpoint:
    """What an interrupted run needs to go on: where it was, and its weights at the end of the
    last finished epoch (`last`, with the optimizer's state) and at its best epoch."""

    progress: Progress
    last: Snapshot
    best: Snapshot


class Trainer:
    """Trains a `TransferModel` on a `Dataset`, phase by phase, epoch by epoch.

    Phase 1 of a pretrained base trains the head on cached features (`features.extract`: each
    image and augmented views of it, computed once); later phases, a network from scratch, and
    `cache=False` read the images at every epoch, augmented on the fly. Each epoch's order is
    drawn from (seed, phase, epoch), and every variable a phase changes (dropout's random state
    included) is in the snapshots, so a resumed run goes on exactly as it would have. After
    each phase the model holds the weights of the best epoch so far. `critical` guards the
    steps that must not be cut in half (the command defers Ctrl-C there).
    """

    def __init__(
        self,
        tm: TransferModel,
        dataset: Dataset,
        options: Options,
        pretrained: bool,
        listener: Listener | None = None,
        critical: Callable[[], AbstractContextManager[Any]] = nullcontext,
        spill_dir: Path | None = None,
    ) -> None:
        self.tm, self.dataset, self.options = tm, dataset, options
        self.phases = phases(options, pretrained)
        self.listener = listener or Listener()
        self.critical, self.spill_dir = critical, spill_dir
        self.augment = augmentation(options.seed, options.flip) if options.augment else None
        self.variables = [*tm.model.variables, *(self.augment.variables if self.augment else [])]
        self.progress = Progress()
        self.touched: set[int] = set()  # the variables some phase so far could change
        self.last: Snapshot | None = None
        self.best: Snapshot | None = None
        self.optimizer: list[np.ndarray] = []  # a resumed phase's optimizer state, to restore
        self.cached: tuple[Features, Features] | None = None
        self.extract_seconds = 0.0

    def run(self) -> None:
        """Every phase, from where `progress` is to the end."""
        for index in range(self.progress.phase, len(self.phases)):
            self._phase(index)

    def checkpoint(self) -> Checkpoint | None:
        """The state to resume from, once an epoch has finished (None before)."""
        if self.last is None or self.best is None or not self.progress.history:
            return None
        return Checkpoint(self.progress, self.last, self.best)

    def resume(self, checkpoint: Checkpoint) -> None:
        """Go on from `checkpoint` at the next `run`."""
        self.progress, self.best, self.last = checkpoint.progress, checkpoint.best, checkpoint.last
        self.touched = set(checkpoint.last.values)
        self._assign(checkpoint.last.values)
        self.optimizer = checkpoint.last.optimizer

    def keep_best(self) -> None:
        """Put the best epoch's weights back (a run cut short ends with them too)."""
        if self.best is not None:
            self._assign(self.best.values)

    @property
    def base_changed(self) -> bool:
        """Whether a phase so far trained the base (cached features no longer describe it)."""
        return any(p.name != "head" for p in self.phases[: self.progress.phase + 1]) or (
            not self.options.cache
        )

    def val_predictions(self) -> tuple[np.ndarray, np.ndarray]:
        """(true class, predicted probabilities) of each validation image that decodes, by the
        model as it is: from the cached features while they still describe the base."""
        if self.cached is not None and not self.base_changed:
            val = self.cached[1]
            rows = range(0, len(val.y), self.options.batch_size)
            head = keras_forward(self.tm.head)
            probs = [head(np.asarray(val.x[r : r + self.options.batch_size, 0])) for r in rows]
            return val.y, np.concatenate(probs) if probs else np.empty((0, 0))
        return self.predictions(self.dataset.val)

    def predictions(self, samples: Sequence[Sample]) -> tuple[np.ndarray, np.ndarray]:
        """(true class, predicted probabilities) of each of `samples` that decodes, read from
        its file as `classify` reads it."""
        forward, truth, probs = keras_forward(self.tm.model), [], []
        options = self.options
        for kept, pixels, failed in features.pixel_batches(
            samples, self.tm.arch, options.resize, options.batch_size
        ):
            self._failed(failed)
            if kept:
                truth += [s.label for s in kept]
                probs.append(forward(pixels))
        return np.array(truth, np.int32), np.concatenate(probs) if probs else np.empty((0, 0))

    def _phase(self, index: int) -> None:
        phase, progress = self.phases[index], self.progress
        fitted = self._compiled(phase)
        if progress.phase == index and progress.epochs:  # resumed within this phase
            fitted.optimizer.build(fitted.trainable_variables)
            for variable, value in zip(fitted.optimizer.variables, self.optimizer, strict=True):
                variable.assign(value)
        else:
            progress.phase, progress.epochs, progress.wait = index, 0, 0
            self.best = self._snapshot(self.touched)
            self.last = self.best
        train, val, examples = self._data(phase)
        while progress.epochs < phase.epochs and progress.wait < self.options.patience:
            epoch = progress.epochs + 1
            rng = np.random.default_rng([self.options.seed, index, epoch])
            record = self._epoch(fitted, phase, epoch, (train(rng), examples), val())
            with self.critical():
                self._record(record, fitted)
        self.keep_best()

    def _compiled(self, phase: Phase) -> Any:
        """The model the phase fits, with the layers it trains set trainable, compiled; the
        variables it can change join `touched`."""
        tm, on_features = self.tm, self._on_features(phase)
        if phase.name == "fine-tune":
            unfreeze_top(tm.base, self.options.fine_tune_fraction)
        else:
            for layer in tm.base:
                layer.trainable = phase.name == "scratch"
        fitted = tm.head if on_features else tm.model
        fitted.compile(
            optimizer=import_keras().optimizers.Adam(phase.learning_rate),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        changing = {id(v) for layer in tm.model.layers if layer.trainable for v in layer.variables}
        if self.augment is not None and not on_features:  # augmenting at each epoch
            changing |= {id(v) for v in self.augment.variables}
        self.touched |= {i for i, v in enumerate(self.variables) if id(v) in changing}
        return fitted

    def _on_features(self, phase: Phase) -> bool:
        return phase.name == "head" and self.options.cache

    def _data(
        self, phase: Phase
    ) -> tuple[Callable[[np.random.Generator], Batches], Callable[[], Batches], int]:
        """(an epoch's training batches for a generator, the validation batches, each made
        afresh for every epoch; the training examples in an epoch)."""
        size = self.options.batch_size
        if self._on_features(phase):
            train, val = self._features()
            return lambda rng: train.batches(size, rng), lambda: val.batches(size), train.epoch_size
        return (
            lambda rng: self._images(self.dataset.train, rng),
            lambda: self._images(self.dataset.val, None),
            len(self.dataset.train),
        )

    def _features(self) -> tuple[Features, Features]:
        """Features of the training images in `options.views` views and of the validation
        images as they are, computed once."""
        if self.cached is None:
            started = time.perf_counter()
            views = self.options.views if self.augment is not None else 1
            train = self._extract(self.dataset.train, views, f"training images ({views} views)")
            self.cached = train, self._extract(self.dataset.val, 1, "validation images")
            self.extract_seconds = time.perf_counter() - started
        return self.cached

    def _extract(self, samples: Sequence[Sample], views: int, what: str) -> Features:
        forward = keras_forward(self.tm.features)
        augment = self.augment

        def augmented(pixels: np.ndarray) -> np.ndarray:
            return np.asarray(augment(pixels, training=True))  # type: ignore[misc]

        with self.listener.extracting(f"features of {len(samples):,} {what}", len(samples)) as done:

            def on_batch(count: int, failed: list[tuple[Sample, str]]) -> None:
                self._failed(failed)
                done(count)

            return features.extract(
                samples,
                self.tm.arch,
                self.options.resize,
                self.options.batch_size,
                forward,
                augmented if views > 1 else None,
                views,
                on_batch,
                self.spill_dir,
            )

    def _images(self, samples: Sequence[Sample], rng: np.random.Generator | None) -> Batches:
        """Batches of preprocessed pixels from the files, in the order `rng` draws (augmented)
        or as they are (validation); files that fail are reported once and not read again."""
        usable = [s for s in samples if s.path not in self.progress.failed]
        if rng is not None:
            usable = [usable[i] for i in rng.permutation(len(usable))]
        batches = features.pixel_batches(
            usable, self.tm.arch, self.options.resize, self.options.batch_size
        )
        for kept, pixels, failed in batches:
            self._failed(failed)
            if kept:
                if rng is not None and self.augment is not None:
                    pixels = np.asarray(self.augment(pixels, training=True))
                yield pixels, np.array([s.label for s in kept], np.int32)

    def _failed(self, failed: list[tuple[Sample, str]]) -> None:
        for sample, why in failed:
            if sample.path not in self.progress.failed:
                self.progress.failed[sample.path] = why
                self.listener.skipped(sample.path, why)

    def _epoch(
        self, fitted: Any, phase: Phase, epoch: int, train: tuple[Batches, int], val: Batches
    ) -> Epoch:
        """One pass over the training batches (and their number of examples), then the
        validation batches."""
        started = time.perf_counter()
        batches, examples = train
        with self.listener.epoch(phase, epoch, examples) as batch_done:
            mean = Mean()
            for x, y in batches:
                mean.add(fitted.train_on_batch(x, y, return_dict=True), len(y))
                batch_done(mean.count, mean.loss, mean.accuracy)
            if not mean.count:
                raise UsageError(
                    f"{printable(str(self.dataset.root))}: none of the training images could "
                    "be read; check the files named above"
                )
            measured = evaluate(fitted, val)
        seconds = time.perf_counter() - started
        return Epoch(
            phase.name, epoch, mean.loss, mean.accuracy, measured.loss, measured.accuracy, seconds
        )

    def _record(self, record: Epoch, fitted: Any) -> None:
        """Book an epoch: history, the best epoch and its weights, the state to resume at."""
        progress = self.progress
        progress.history.append(record)
        progress.epochs = record.epoch
        improved = record.val_loss < progress.best_loss
        if improved:
            progress.best_loss, progress.best = record.val_loss, (record.phase, record.epoch)
            progress.wait = 0
            self.best = self._snapshot(self.touched)
        else:
            progress.wait += 1
        self.last = self._snapshot(self.touched, fitted.optimizer)
        self.listener.finished(record, improved)

    def _snapshot(self, indices: set[int], optimizer: Any = None) -> Snapshot:
        values = {i: np.array(self.variables[i].numpy()) for i in sorted(indices)}
        state = [np.array(v.numpy()) for v in optimizer.variables] if optimizer else []
        return Snapshot(values, state)

    def _assign(self, values: dict[int, np.ndarray]) -> None:
        for index, value in values.items():
            self.variables[index].assign(value)


#: Batches of (inputs, class indices): cached features, or preprocessed pixels.
Batches = Iterator[tuple[np.ndarray, np.ndarray]]


@dataclass
class Mean:
    """Loss and accuracy over the batches so far, each batch weighted by its images (Keras's
    `train_on_batch` and `test_on_batch` give one batch's figures)."""

    count: int = 0
    loss_sum: float = 0.0
    correct: float = 0.0

    def add(self, logs: dict[str, float], images: int) -> None:
        self.count += images
        self.loss_sum += float(logs["loss"]) * images
        self.correct += float(logs["accuracy"]) * images

    @property
    def loss(self) -> float:
        return self.loss_sum / self.count if self.count else math.nan

    @property
    def accuracy(self) -> float:
        return self.correct / self.count if self.count else math.nan


def evaluate(fitted: Any, batches: Batches) -> Mean:
    """Loss and accuracy over `batches`, in inference mode."""
    mean = Mean()
    for x, y in batches:
        mean.add(fitted.test_on_batch(x, y, return_dict=True), len(y))
    if not mean.count:
        raise UsageError("none of the validation images could be read; check the files named above")
    return mean


def unfreeze_top(base: list[Any], fraction: float) -> int:
    """Make the top `fraction` of the base's weighted layers trainable (at least one), the rest
    frozen. BatchNorm stays frozen, which in Keras 3 also keeps it in inference mode (a
    `training=False` call does not: `fit` overrides it, keras-team/keras#20285): its ImageNet
    statistics are kept, not replaced by those of the user's batches. The number unfrozen."""
    norm = import_keras().layers.BatchNormalization
    weighted = [layer for layer in base if layer.weights and not isinstance(layer, norm)]
    top = {id(layer) for layer in weighted[-max(1, round(len(weighted) * fraction)) :]}
    for layer in base:
        layer.trainable = id(layer) in top
    return len(top)
