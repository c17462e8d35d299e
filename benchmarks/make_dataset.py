"""A real small image data set as class folders, from data that ships inside a package.

    python benchmarks/make_dataset.py DIR [--source digits|faces] [--split]

`cnn train` is measured on real images that anyone can regenerate offline, so nothing here is
downloaded and no image is committed: the pixels come from inside the installed wheels
(`pip install scikit-learn scikit-image`, benchmark-only dependencies).

- `digits` (default): scikit-learn's `load_digits`, the UCI handwritten digits: 1,797 images
  of 8x8 pixels from 43 writers, 10 classes of about 180 each. The only bundled image set with
  enough images and classes for a held-out top-1 that separates methods (360 validation images:
  one image is 0.28 points). It is far from ImageNet (tiny, grey, upscaled 28x), so frozen
  ImageNet features are good but not perfect on it: there is room above the floor for a
  better head or fine-tuning to show, and room below it for a worse default to be caught.
- `faces`: scikit-image's `lfw_subset`, 100 faces and 100 non-faces of 25x25 pixels (the
  first 100 are faces): a small two-class set for quick checks.

Images are written as greyscale PNG files `DIR/<class>/<index>.png` exactly as the data holds
them (no resizing: `cnn` does that as it does for any user's folder). `--split` moves them to
`DIR/train/<class>/` and `DIR/val/<class>/` by the same seeded stratified 80/20 hold-out that
`cnncli.datasets.discover` applies to a flat folder (so both layouts give one split).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cnncli import datasets  # noqa: E402

#: The hold-out fraction and seed of the benchmarks (`cnn train`'s defaults).
VAL_SPLIT, SEED = 0.2, 0


def digits() -> Iterator[tuple[str, np.ndarray]]:
    """(class name, 8-bit greyscale image) for each of scikit-learn's 1,797 digits."""
    from sklearn.datasets import load_digits

    data = load_digits()
    for image, target in zip(data.images, data.target, strict=True):
        yield str(target), np.rint(image * (255 / 16)).astype(np.uint8)  # values are 0-16


def faces() -> Iterator[tuple[str, np.ndarray]]:
    """(class name, 8-bit greyscale image) for scikit-image's 200 face / non-face patches."""
    from skimage.data import lfw_subset

    for index, image in enumerate(lfw_subset()):  # floats in 0-1; faces first
        yield ("face" if index < 100 else "not_face"), np.rint(image * 255).astype(np.uint8)


SOURCES = {"digits": digits, "faces": faces}


def write(folder: Path, source: str) -> int:
    """Write `source`'s images as `folder/<class>/<index>.png`; the number written."""
    count = 0
    for count, (name, pixels) in enumerate(SOURCES[source](), start=1):
        (folder / name).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels, mode="L").save(folder / name / f"{count - 1:04d}.png")
    return count


def split(folder: Path) -> datasets.Dataset:
    """Move a flat class-folder set into train/ and val/ by `datasets.discover`'s hold-out."""
    dataset = datasets.discover(folder, VAL_SPLIT, SEED)
    for part, samples in (("train", dataset.train), ("val", dataset.val)):
        for sample in samples:
            source = Path(sample.path)
            target = folder / part / source.relative_to(folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(source, target)
    for name in dataset.classes:
        (folder / name).rmdir()
    return dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", type=Path, help="folder to create (must not exist)")
    parser.add_argument("--source", choices=sorted(SOURCES), default="digits")
    parser.add_argument("--split", action="store_true", help="write train/ and val/ folders")
    args = parser.parse_args()
    if args.dir.exists():
        parser.error(f"{args.dir} exists; give a new folder")
    count = write(args.dir, args.source)
    if args.split:
        dataset = split(args.dir)
        print(f"{args.dir}: {len(dataset.train)} train + {len(dataset.val)} val images")
    print(f"{args.dir}: {count} {args.source} images in class folders")


if __name__ == "__main__":
    main()
