"""A whole `cnn train` run: the data set found and checked, each architecture trained and its
bundle written, progress shown, and a stop signal turned into a complete bundle of the best
epoch so far (plus what `--resume` needs to go on).

`training` knows how to fit a model; this module knows what a run owes the person who started
it: warnings for what discovery passed over, one line per unreadable image, a bar (terminal) or
a line (log) per epoch, and a folder that is whole whenever the process ends, normally or by a
signal.
"""

from __future__ import annotations

import dataclasses
import json
import platform
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnncli import __version__, bundle, progress, train_output, training
from cnncli.cache import ModelCache, package_version
from cnncli.choices import Resize
from cnncli.datasets import Dataset, discover
from cnncli.engines import keras_forward
from cnncli.env import Environment
from cnncli.errors import Interrupted, UsageError
from cnncli.inputs import printable
from cnncli.leaderboard import Outcome
from cnncli.networks import BundleNetwork, Trainable, resize_for
from cnncli.pipeline import stop_signals
from cnncli.registry import Arch
from cnncli.tf_runtime import import_keras
from cnncli.timing import warm_median

#: Packages whose versions a bundle records (what produced it), those installed.
VERSIONED = ("tensorflow", "tensorflow-cpu", "keras", "numpy", "pillow")


@dataclass(frozen=True)
class Request:
    """What `cnn train` was asked: the data, the networks to start from (registry
    architectures with their base weights, or bundles to train further; one folder each under
    `output` when there are several), how to train, and how to treat an existing `output`.
    `resize`: the user's `--resize`, None for each network's own (a bundle's, else crop)."""

    data: Path
    models: tuple[Trainable, ...]
    output: Path
    options: training.Options
    val_split: float = 0.2
    force: bool = False
    resume: bool = False
    resize: Resize | None = None

    def folder(self, arch: Arch) -> Path:
        """Where `arch`'s bundle goes: `output` itself, or `output/<arch>` among several."""
        return self.output if len(self.models) == 1 else self.output / arch.name


def run(env: Environment, request: Request) -> list[Outcome]:
    """Train every architecture of `request` in turn; the leaderboard's rows. A stop signal
    ends the run once the architecture under way has written its bundle (re-raised)."""
    _check_output(request)
    dataset = discover(request.data, request.val_split, request.options.seed)
    for warning in dataset.warnings:
        env.warn(warning)
    if not dataset.val:
        raise UsageError(
            f"{printable(str(request.data))}: no images left for validation (early stopping "
            "and the model's measure need them); add images, or a val/ folder"
        )
    env.note(_counts(dataset))
    outcomes = []
    for network in request.models:
        folder = request.folder(trained_arch(network))
        if len(request.models) > 1 and request.resume and _finished(folder):
            outcomes.append(_outcome(folder))  # trained to the end by the interrupted run
            continue
        outcomes.append(_train_one(env, request, dataset, network, folder))
    return outcomes


def _check_output(request: Request) -> None:
    """Refuse an output this run must not write, before any model is built."""
    names = [trained_arch(network).name for network in request.models]
    if len(set(names)) < len(names):
        raise UsageError(f"--arch {','.join(names)} names an architecture twice; give each once")
    for network in request.models:
        folder = request.folder(trained_arch(network))
        if isinstance(network, BundleNetwork) and folder.resolve() == network.bundle.path.resolve():
            raise UsageError(
                f"--output {printable(str(folder))}: is the model --arch trains further, which "
                "is never overwritten; choose a new folder"
            )
    if len(request.models) > 1:
        train_output.check_parent(request.output, request.data, request.force)
        return
    train_output.check(request.output, request.data, names[0], request.force, request.resume)


def trained_arch(network: Trainable) -> Arch:
    """The registry architecture a network is (a bundle's base, with its input size and
    preprocessing): what the new bundle records and names its folder after."""
    if isinstance(network, BundleNetwork):
        return dataclasses.replace(network.record, name=network.bundle.base.name)
    return network.record


def _finished(folder: Path) -> bool:
    """Whether `folder` holds a bundle whose training ended (no resume state left)."""
    return bundle.is_bundle(folder) and not (folder / train_output.STATE).is_file()


def _outcome(folder: Path) -> Outcome:
    document = json.loads((folder / bundle.METADATA).read_text(encoding="utf-8"))
    return Outcome.of(folder, document)


def _counts(dataset: Dataset) -> str:
    test = f", {len(dataset.test):,} test" if dataset.test else ""
    return (
        f"{len(dataset.classes)} classes: {len(dataset.train):,} training images, "
        f"{len(dataset.val):,} validation{test}"
    )


def _train_one(
    env: Environment,
    request: Request,
    dataset: Dataset,
    network: Trainable,
    folder: Path,
) -> Outcome:
    """One architecture: build, train (resumed where its folder says), write its bundle."""
    arch = trained_arch(network)
    resume = request.resume and (folder / train_output.STATE).is_file()
    if not resume and folder.is_dir() and len(request.models) > 1 and not request.force:
        train_output.check(folder, request.data, arch.name, False, False)
    options = dataclasses.replace(request.options, resize=resize_for(network, request.resize, env))
    import_keras().utils.set_random_seed(options.seed)  # the new head's initial weights
    with progress.status(env, f"building {arch.name} {_origin(network)}", True):
        model = _model(network, dataset, options.dropout)
    stopped: Interrupted | None = None
    with stop_signals() as signals:
        trainer = training.Trainer(
            training.TransferModel.of(arch, model),
            dataset,
            options,
            pretrained=_pretrained(network),
            listener=Display(env, arch.name),
            critical=signals.deferred,
        )
        if resume:
            trainer.resume(train_output.read_state(folder))
            env.note(f"{arch.name}: resuming after epoch {len(trainer.progress.history)}")
        try:
            trainer.run()
        except KeyboardInterrupt as exc:
            stopped = Interrupted.of(exc)
        with signals.deferred():
            _save(env, request, dataset, trainer, network, folder, stopped)
    if stopped is not None:
        raise stopped
    return _outcome(folder)


def _save(
    env: Environment,
    request: Request,
    dataset: Dataset,
    trainer: training.Trainer,
    network: Trainable,
    folder: Path,
    stopped: Interrupted | None,
) -> None:
    """Write the bundle of the best epoch, and after a stop the state to resume from; a stop
    before the first epoch ended leaves nothing to write."""
    checkpoint = trainer.checkpoint()
    if checkpoint is None:
        env.note(f"{trainer.tm.arch.name}: stopped before the first epoch ended; nothing written")
        return
    trainer.keep_best()
    with progress.status(env, f"writing {folder}", False):
        folder.mkdir(parents=True, exist_ok=True)
        if stopped is not None:
            train_output.write_state(folder, checkpoint)
        truth, probs = trainer.val_predictions()
        matrix = confusion_matrix(truth, probs, len(dataset.classes))
        train_output.write_history(folder, checkpoint.progress.history)
        train_output.write_split(folder, dataset.assignment(), dataset.root)
        title = f"{trainer.tm.arch.name} on {dataset.root.name}: validation"
        train_output.write_pictures(folder, checkpoint.progress, matrix, dataset.classes, title)
        document = bundle_metadata(env, request, dataset, trainer, network, matrix, stopped)
        bundle.write(folder, trainer.tm.model, document)
        if stopped is None:
            train_output.clear_state(folder)
    what = "interrupted: the best epoch so far" if stopped else "the best epoch"
    env.note(f"{trainer.tm.arch.name}: {what} written to {folder}")


def confusion_matrix(truth: np.ndarray, probs: np.ndarray, classes: int) -> np.ndarray | None:
    """Counts of (true class, predicted class); None without validation images."""
    if not len(truth):
        return None
    matrix = np.zeros((classes, classes), np.int64)
    np.add.at(matrix, (truth, probs.argmax(axis=1)), 1)
    return matrix


def top1(matrix: np.ndarray | None) -> float | None:
    """The share of the matrix on its diagonal."""
    return float(np.trace(matrix) / matrix.sum()) if matrix is not None else None


def bundle_metadata(
    env: Environment,
    request: Request,
    dataset: Dataset,
    trainer: training.Trainer,
    network: Trainable,
    matrix: np.ndarray | None,
    stopped: Interrupted | None,
) -> dict[str, Any]:
    """Everything the bundle records beside the model (bundle.py's keys first)."""
    arch, run = trainer.tm.arch, trainer.progress
    best = run.best_epoch()
    return {
        "arch": arch.name,
        "input_size": arch.input_size,
        "preprocessing": arch.preprocessing,
        "resize": trainer.options.resize.value,
        "classes": list(dataset.classes),
        "params": int(trainer.tm.model.count_params()),
        **_origins(env, network, dataset),
        "options": {**trainer.options.as_dict(), "val_split": request.val_split},
        "data": {"root": str(dataset.root.resolve()), "counts": dataset.counts()},
        "training": {
            "status": "interrupted" if stopped else "complete",
            "history": [train_output.json_epoch(e) for e in run.history],
            "best": best.as_dict() if best else None,
            "val_top1": top1(matrix),
            "test_top1": _test_top1(trainer, dataset),
            "ms_per_image": _ms_per_image(trainer),
            "feature_seconds": round(trainer.extract_seconds, 3),
            "skipped": run.failed,
        },
        "versions": _versions(),
    }


def _origin(network: Trainable) -> str:
    """Where the model being built starts from, as the progress line says it."""
    if isinstance(network, BundleNetwork):
        return f"from the model in {printable(network.weights)}"
    return f"with {network.weights} weights"


def _model(network: Trainable, dataset: Dataset, dropout: float) -> Any:
    """The flat model to train: a registry network under a new head, or a bundle's model,
    whole when it was trained on DATA's classes, else its base under a new head."""
    if isinstance(network, BundleNetwork):
        same = network.bundle.classes == dataset.classes
        return training.continued(network.keras_model(), same, len(dataset.classes), dropout)
    return training.transfer_model(network.record, network.source, len(dataset.classes), dropout)


def _pretrained(network: Trainable) -> bool:
    """Whether its base learnt elsewhere (ImageNet, a weights file): then the head trains on
    the frozen base. A network from random weights, or a bundle that was trained from them,
    trains (further) as a whole."""
    if isinstance(network, BundleNetwork):
        return (network.bundle.metadata.get("base_weights") or {}).get("source") != "none"
    return not network.random


def _origins(env: Environment, network: Trainable, dataset: Dataset) -> dict[str, Any]:
    """`base_weights`: the source of the base's weights and, for a file, its SHA-256 (the
    cache's remembered hash); a bundle trained further keeps its own, and `parent` names
    the bundle (folder, content digest as the cache keys it) and whether its head was kept."""
    cache = ModelCache(env.cache_dir)
    if isinstance(network, BundleNetwork):
        parent = network.bundle
        return {
            "base_weights": parent.metadata.get("base_weights"),
            "parent": {
                "path": str(parent.path.resolve()),
                "sha256": parent.digest_with(cache.file_hash),
                "head": "kept" if parent.classes == dataset.classes else "new",
            },
        }
    weights = network.source
    if weights.path is None:
        return {"base_weights": {"source": weights.source, "path": None, "sha256": None}}
    digest = cache.file_hash(weights.path)
    return {
        "base_weights": {"source": "file", "path": str(weights.path.resolve()), "sha256": digest}
    }


def _test_top1(trainer: training.Trainer, dataset: Dataset) -> float | None:
    if not dataset.test:
        return None
    truth, probs = trainer.predictions(dataset.test)
    return top1(confusion_matrix(truth, probs, len(dataset.classes)))


def _ms_per_image(trainer: training.Trainer) -> float:
    """Warm milliseconds per image of the whole model on Keras, one image at a time."""
    size = trainer.tm.arch.input_size
    forward = keras_forward(trainer.tm.model)
    pixels = np.zeros((1, size, size, 3), np.float32)
    _, seconds = warm_median(lambda: forward(pixels), 5)
    return round(seconds * 1000, 2)


def _versions() -> dict[str, str]:
    installed = {name: package_version(name) for name in VERSIONED}
    versions = {name: v for name, v in installed.items() if v != "absent"}
    return {"cnncli": __version__, "python": platform.python_version(), **versions}


# --- What the person watching sees ------------------------------------------------------------


class Display(training.Listener):
    """Progress on stderr: a bar per step on a terminal, and one line per epoch whether or not
    there is one (the bar is transient; the line is the record)."""

    def __init__(self, env: Environment, name: str) -> None:
        self.env, self.name = env, name

    @contextmanager
    def extracting(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        if not self.env.stderr_isatty:
            self.env.note(f"{self.name}: {description}")
        with progress.progress(self.env, f"{self.name}: {description}", total) as meter:
            yield meter.advance

    @contextmanager
    def epoch(self, phase: training.Phase, epoch: int, images: int) -> Iterator[training.BatchDone]:
        title = f"{self.name} {phase.name} {epoch}/{phase.epochs}"
        with progress.epoch_bar(self.env, title, images) as update:
            yield update

    def finished(self, record: training.Epoch, best: bool) -> None:
        self.env.note(epoch_line(self.name, record, best))

    def skipped(self, path: str, why: str) -> None:
        self.env.error(f"{path}: {why}; skipped")


def epoch_line(name: str, e: training.Epoch, best: bool) -> str:
    """One epoch as a log line."""
    return (
        f"{name} {e.phase} epoch {e.epoch}: loss {e.loss:.4f} accuracy {e.accuracy:.1%}, "
        f"val loss {e.val_loss:.4f} val accuracy {e.val_accuracy:.1%} ({e.seconds:.1f} s)"
        + (" best" if best else "")
    )
