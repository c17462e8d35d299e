"""int8 models: full-integer post-training quantization for the LiteRT engine.

On this project's 2-core CPU float32 ResNet50 runs at the machine's sgemm limit; the way past it
is less arithmetic per image, which XNNPACK's integer kernels are meant to give (issue 12; a first
check here found no gain yet: benchmarks/README.md, "int8 speed"). Weights and
activations become int8; the model's input and output stay float32, so photos are preprocessed
exactly as for the float model and scores come out as probabilities.

Activations need ranges, which the converter measures by running the float model over a
representative set of inputs: the calibration set. It is built here from photos (decoded and
preprocessed exactly as classification does), stretched to `Recipe.samples` with cheap
augmentations (mirror images, shifted and zoomed crops) when there are fewer photos than that.
The set decides the model, so its `fingerprint` (the photos' bytes and the recipe) belongs in the
model's cache key. benchmarks/INT8.md measures how much the choice of set matters.
"""

from __future__ import annotations

import hashlib
import json
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cnncli.errors import CnnError, InputError, UsageError
from cnncli.images import Resize, load_array, open_regular
from cnncli.inputs import Inputs
from cnncli.preprocess import preprocess
from cnncli.quiet import native_output_silenced
from cnncli.registry import Arch
from cnncli.tf_runtime import import_keras

#: Augmented crops are cut from the photo scaled to this multiple of the model's input size: a
#: zoom of 1.25 with a random shift, which stays inside what the centre view shows of a subject.
ZOOM = 1.25

#: Changes whenever the way a recipe turns photos into samples changes, so that cache entries
#: calibrated the old way are not mistaken for new ones.
ALGORITHM = "cnncli-calibration-1"


@dataclass(frozen=True)
class Recipe:
    """How a calibration set is drawn from its photos (hashed into `fingerprint`).

    The first `samples` photos are used. With `augment`, photos are reused as mirrored and
    cropped variants until there are `samples` samples; without it, each photo counts once."""

    samples: int = 64
    augment: bool = True
    seed: int = 0


#: Where the default calibration photos, the repository's sample images, are: beside the package
#: in a checkout or an editable install, and under the environment's `share/` from a wheel
#: (pyproject.toml's data-files). Augmented to `Recipe.samples`, they calibrated MobileNet-0.25 as
#: well as its evaluation photos themselves did, where random noise failed (benchmarks/INT8.md,
#: "Which calibration set"). Found by content, so either copy gives the same cache key.
SAMPLE_IMAGES = (
    Path(__file__).resolve().parent.parent / "sample_images",
    Path(sys.prefix) / "share" / "cnncli" / "sample_images",
)


def sample_images(places: Sequence[Path] = SAMPLE_IMAGES) -> Path:
    """The first of `places` that is a folder (the first place when none is, for the error)."""
    return next((place for place in places if place.is_dir()), places[0])


@dataclass(frozen=True)
class CalibrationSource:
    """The photos an int8 model is calibrated on (`--calibrate`), and how they are drawn."""

    paths: tuple[str, ...]
    #: What the conversion note calls the photos: "sample images", "photos in DIR".
    name: str
    recipe: Recipe = Recipe()

    @classmethod
    def parse(cls, spec: str | None) -> CalibrationSource:
        """The photos `--calibrate DIR|GLOB` names (read as classify reads its arguments), or
        the sample images when `spec` is None; a spec naming no photo is a usage error."""
        where = spec if spec is not None else str(sample_images())
        entries = list(Inputs((where,)).entries())
        paths = tuple(entry.image for entry in entries if entry.error is None)
        if paths:
            return cls(paths, "sample images" if spec is None else f"photos in {spec}")
        if spec is None:
            raise CnnError(f"the sample images ({where}) are missing: give --calibrate DIR")
        raise UsageError(f"--calibrate {spec}: {entries[0].error if entries else 'no photos'}")

    def fingerprint(self) -> str:
        return fingerprint(self.paths, self.recipe)

    def describe(self) -> str:
        """For the conversion note: which photos, and how many samples they make."""
        used = min(len(self.paths), self.recipe.samples)
        stretched = used < self.recipe.samples and self.recipe.augment
        return f"{used} {self.name}" + (
            f", augmented to {self.recipe.samples}" if stretched else ""
        )

    def samples(self, arch: Arch, warn: Callable[[str], None]) -> np.ndarray:
        """The calibration samples for `arch`; each photo that cannot be read is told to `warn`
        (the others calibrate the model all the same)."""
        calibration = calibration_set(self.paths, arch, self.recipe)
        for skipped in calibration.skipped:
            warn(f"{skipped}; left out of the calibration set")
        return calibration.samples


@dataclass
class Calibration:
    """Preprocessed samples for one architecture, and the photos that could not be decoded."""

    samples: np.ndarray  # (N, size, size, 3) float32, as the model's input layer takes them
    skipped: list[InputError] = field(default_factory=list)


def calibration_set(paths: Sequence[str | Path], arch: Arch, recipe: Recipe) -> Calibration:
    """The calibration samples for `arch` from `paths`, following `recipe`.

    A photo that cannot be decoded is skipped (and listed), as classification skips it; a set
    with no readable photo at all is a `CnnError`, since int8 ranges cannot be guessed."""
    views: list[tuple[np.ndarray, np.ndarray]] = []
    skipped: list[InputError] = []
    for path in list(paths)[: recipe.samples]:
        try:
            views.append(_views(path, arch.input_size))
        except InputError as exc:
            skipped.append(exc)
    if not views:
        raise CnnError("no readable photo to calibrate the int8 model with")
    count = recipe.samples if recipe.augment else len(views)
    rng = np.random.default_rng(recipe.seed)
    pixels = [_sample(views[k % len(views)], k // len(views), rng) for k in range(count)]
    return Calibration(preprocess(np.stack(pixels), arch.preprocessing), skipped)


def _views(path: str | Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The photo as the model sees it (the evaluation crop) and a larger view to cut crops from."""
    return load_array(path, size, Resize.crop), load_array(path, round(size * ZOOM), Resize.crop)


def _sample(
    views: tuple[np.ndarray, np.ndarray], turn: int, rng: np.random.Generator
) -> np.ndarray:
    """One photo's sample on its `turn`-th use: the evaluation view itself, then its mirror
    image, then random crops of the zoomed view, each mirrored or not at random."""
    centre, zoomed = views
    if turn == 0:
        return centre
    if turn == 1:
        return centre[:, ::-1]
    size = centre.shape[0]
    top, left = rng.integers(0, zoomed.shape[0] - size + 1, size=2)
    crop = zoomed[top : top + size, left : left + size]
    return crop[:, ::-1] if rng.random() < 0.5 else crop


def fingerprint(paths: Sequence[str | Path], recipe: Recipe) -> str:
    """SHA-256 of what a calibration set is made of: the bytes of the photos the recipe uses, in
    order, and the recipe. File names do not count (a renamed or copied set is the same set), so
    the model cache can key on it before anything is decoded."""
    digest = hashlib.sha256(json.dumps([ALGORITHM, asdict(recipe)]).encode())
    for path in list(paths)[: recipe.samples]:
        digest.update(_content_hash(path).encode())
    return digest.hexdigest()


def _content_hash(path: str | Path) -> str:
    """SHA-256 of a file's bytes; for a file that cannot be opened, its error (it is skipped)."""
    try:
        file = open_regular(path)
    except InputError as exc:
        return f"unreadable:{exc.reason}"
    digest = hashlib.sha256()
    with file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert_int8(model: Any, calibration: np.ndarray, path: Path) -> None:
    """Write `model` (Keras) as a full-integer LiteRT flatbuffer calibrated on `calibration`.

    The same converter path as `litert.convert` (`from_keras_model`; converting from concrete
    functions gave all-NaN scores here), with none of the converter's logging. An operation
    without an int8 kernel fails the conversion rather than leaving a float island in the
    model: a model that is partly float is neither what the user asked for nor fast."""
    import_keras()
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    configure_int8(converter, calibration)
    with native_output_silenced(), warnings.catch_warnings():
        # "Statistics for quantized inputs were expected": the input is float by design
        warnings.simplefilter("ignore")
        flatbuffer = converter.convert()
    path.write_bytes(flatbuffer)


def configure_int8(converter: Any, calibration: np.ndarray) -> None:
    """Set a `TFLiteConverter` for int8 weights and activations with float32 input and output."""
    import tensorflow as tf

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: _one_by_one(calibration)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.float32  # preprocessing stays what the float model takes
    converter.inference_output_type = tf.float32


def _one_by_one(calibration: np.ndarray) -> Iterator[list[np.ndarray]]:
    """The representative dataset: one sample per step, as the converter's calibrator expects."""
    for sample in calibration:
        yield [np.ascontiguousarray(sample[None], dtype=np.float32)]
