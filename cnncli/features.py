"""A frozen network's features, computed once per image and reused every epoch.

With the base frozen, what the head sees of an image never changes unless the image does, so
computing it again at every epoch (as a plain `fit` over images does) costs a full forward pass
per image per epoch for nothing. Here each image goes through the base once, and so do a few
augmented views of it (`views`): each epoch then shows the head every image and one of its
views drawn at random, so augmentation still varies what the head sees, at the cost of `views`
passes in all instead of one per epoch.

Images stream through `pipeline.decoded` (the decode pool `classify` uses, same decoder and error
texts), and features larger than `SPILL_BYTES` live in an unlinked temporary file rather than in
memory, so 100,000 images need no more RAM than 100.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnncli.choices import Resize
from cnncli.datasets import Sample
from cnncli.inputs import Entry
from cnncli.pipeline import decoded
from cnncli.preprocess import preprocess
from cnncli.registry import Arch

#: Cached features larger than this go to a temporary file instead of memory.
SPILL_BYTES = 512 * 2**20

#: A batch of preprocessed pixels in, a batch of something out (features, augmented pixels).
Transform = Callable[[np.ndarray], np.ndarray]


@dataclass
class Features:
    """Pooled features (images, views, dimensions) of the images that decoded, and their class
    indices; view 0 is the image itself, the others augmented."""

    x: np.ndarray
    y: np.ndarray

    @property
    def views(self) -> int:
        return int(self.x.shape[1])

    @property
    def epoch_size(self) -> int:
        """Training examples per epoch: each image, and one augmented view of it if any."""
        return len(self.y) * (2 if self.views > 1 else 1)

    def batches(
        self, batch_size: int, rng: np.random.Generator | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """One epoch. Training (`rng`): every image as it is and one of its augmented views
        drawn at random, shuffled, so the head always sees the real images and augmentation
        adds variations of them (drawing one view of each image instead cost accuracy on
        digits, benchmarks/TRAIN.md); validation (no `rng`): every image as it is, in order."""
        count = len(self.y)
        rows, view = np.arange(count), np.zeros(count, int)
        if rng is not None and self.views > 1:
            rows = np.concatenate([rows, rows])
            view = np.concatenate([view, rng.integers(1, self.views, size=count)])
        order = rng.permutation(len(rows)) if rng is not None else np.arange(len(rows))
        for start in range(0, len(order), batch_size):
            pick = order[start : start + batch_size]
            yield np.asarray(self.x[rows[pick], view[pick]]), self.y[rows[pick]]


def pixel_batches(
    samples: Sequence[Sample], arch: Arch, resize: Resize, batch_size: int
) -> Iterator[tuple[list[Sample], np.ndarray, list[tuple[Sample, str]]]]:
    """(samples decoded, their preprocessed pixels, (sample, why not) for the others) a batch
    at a time, in order, decoded ahead by `pipeline.decoded`."""
    labels = {sample.path: sample for sample in samples}
    entries = (Entry(sample.path) for sample in samples)
    size = arch.input_size
    for batch in decoded(entries, size, resize, batch_size):
        kept = [(labels[image], v) for image, v in batch if not isinstance(v, str)]
        failed = [(labels[image], v) for image, v in batch if isinstance(v, str)]
        pixels = np.stack([v for _, v in kept]) if kept else np.empty((0, size, size, 3))
        yield [s for s, _ in kept], preprocess(pixels, arch.preprocessing), failed


def extract(
    samples: Sequence[Sample],
    arch: Arch,
    resize: Resize,
    batch_size: int,
    forward: Transform,
    augment: Transform | None = None,
    views: int = 1,
    on_batch: Callable[[int, list[tuple[Sample, str]]], None] = lambda n, failed: None,
    spill_dir: Path | None = None,
    spill_bytes: int = SPILL_BYTES,
) -> Features:
    """Each image's features through `forward`, and those of `views - 1` views of it through
    `augment` first. Images that fail to decode are left out; `on_batch(images done,
    failures)` hears of each batch."""
    if views > 1 and augment is None:
        raise ValueError("augmented views need an augmentation")
    probe = forward(np.zeros((1, arch.input_size, arch.input_size, 3), np.float32))
    x = _allocate((len(samples), views, int(probe.shape[-1])), spill_dir, spill_bytes)
    y = np.empty(len(samples), np.int32)
    count = 0
    for kept, pixels, failed in pixel_batches(samples, arch, resize, batch_size):
        if kept:
            rows = slice(count, count + len(kept))
            x[rows, 0] = forward(pixels)
            for view in range(1, views):
                x[rows, view] = forward(augment(pixels))  # type: ignore[misc]
            y[rows] = [s.label for s in kept]
            count += len(kept)
        on_batch(len(kept) + len(failed), failed)
    return Features(x[:count], y[:count])


def _allocate(shape: tuple[int, ...], spill_dir: Path | None, spill_bytes: int) -> np.ndarray:
    """A float32 array in memory, or backed by an unlinked temporary file when it is larger
    than `spill_bytes` (100,000 images of 1,280 features in 3 views are 1.5 GB)."""
    if math.prod(shape) * 4 <= spill_bytes:
        return np.empty(shape, np.float32)
    return np.memmap(tempfile.TemporaryFile(dir=spill_dir), np.float32, "w+", shape=shape)
