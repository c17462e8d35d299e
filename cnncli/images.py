"""Reading photos the way an ImageNet model expects them, whatever the file holds.

Every file becomes an upright 8-bit RGB image (EXIF orientation applied, alpha composited on
white, first frame of an animation), then one of two resize policies gives the model its square.
Each failure is an `InputError` naming the file, so one bad photo never stops the others.
Only regular files are read, and only as photos: a named pipe, a socket or a device is refused
before it is opened, and of the formats Pillow knows only the photo formats are tried, so a
PostScript file never reaches Ghostscript and an HDF5 file never reaches a stub decoder.
"""

from __future__ import annotations

import errno
import os
import stat
import warnings
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from PIL import ExifTags, Image, UnidentifiedImageError

from cnncli.choices import Resize
from cnncli.errors import InputError

if TYPE_CHECKING:  # NumPy loads on first decode, not on `cnn --help`
    import numpy as np

#: The central crop of the standard ImageNet evaluation: resize the shorter side to size / 0.875
#: (256 for 224), then cut the centre square.
CROP_FRACTION = 0.875

#: Pillow's own bound (about 89 million pixels) on the pixels a file may decode to. Pillow checks
#: it on the size a file declares, as it opens it, which refuses a 102-megapixel camera JPEG that
#: decodes at 1/8 scale to 1.6 megapixels. So its check is off and `_refuse_bombs` makes it on
#: the size that will really be decoded, after `draft`.
MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
Image.MAX_IMAGE_PIXELS = None

#: EXIF orientations (2-8) and the transposition that turns such a photo upright.
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

#: The formats cameras, phones, browsers and editors save photos in: the only ones opened and
#: the only extensions taken from folders. Pillow also registers documents (PDF, and EPS, which
#: it renders with Ghostscript), video (MPEG), scientific data (FITS, HDF5, GRIB), drawings (WMF)
#: and icons, fonts and game textures.
PHOTO_FORMATS = (
    "JPEG",
    "MPO",
    "PNG",
    "GIF",
    "WEBP",
    "AVIF",
    "TIFF",
    "BMP",
    "JPEG2000",
    "PPM",
    "TGA",
)

#: What an `os.stat` or `os.open` failure means for a photo, by errno.
_OPEN_ERRORS = {
    errno.ENOENT: "no such file",
    errno.ENOTDIR: "no such file",
    errno.EACCES: "permission denied (make the file readable)",
    errno.EPERM: "permission denied (make the file readable)",
    errno.ELOOP: "a symlink loop: the link leads back to itself (fix or remove the link)",
}

#: Files that are not regular files, by the type bits of their `st_mode`.
_NOT_REGULAR = {
    stat.S_IFIFO: "a named pipe (FIFO)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


@cache
def photo_extensions() -> frozenset[str]:
    """File endings of the photo formats (`.jpg`, `.png`, `.webp`, ...), lower case."""
    extensions = Image.registered_extensions()
    return frozenset(ext.lower() for ext, name in extensions.items() if name in PHOTO_FORMATS)


@cache
def openable_formats() -> tuple[str, ...]:
    """The photo formats this Pillow opens by name (AVIF needs libavif; MPO opens as JPEG)."""
    Image.init()
    return tuple(name for name in PHOTO_FORMATS if name in Image.OPEN)


def load_rgb(path: str | Path, draft_for: int | None = None) -> Image.Image:
    """Open `path` as an upright RGB image; raise `InputError` naming the file on any failure.

    With `draft_for` (a model's input size), a JPEG decodes at the smallest of its built-in
    1/2, 1/4 and 1/8 scales that still covers the crop policy's resize for that size: a
    12-megapixel photo then costs a fraction of its full decode, and the crop still resamples
    from at least as many pixels as it keeps. Without it, a JPEG decodes at full size unless
    that is over `MAX_PIXELS`, then at the largest of those scales under it.
    """
    _ignore_pillow_warnings()
    with open_regular(path) as file:
        return _decode(file, path, draft_for)


def _ignore_pillow_warnings() -> None:
    """Keep Pillow's warnings about a file (corrupt EXIF, odd chunks) off the user's terminal.

    What matters is said by our own error line, or not at all: a file that decodes is
    classified. The filter is process-wide, as warning filters are (a `catch_warnings` per
    decode would race between the decoding threads, since it swaps the process-wide list), and
    set again on each call (a microsecond), in case a host such as a test runner reset them."""
    warnings.filterwarnings("ignore", module=r"PIL\.")


def open_regular(path: str | Path) -> BinaryIO:
    """`path` opened for reading if it is a regular file; `InputError` saying what it is if not.

    The type is checked before opening (opening a device can have effects) and again on the
    open descriptor, so a file swapped for a pipe in between is still refused. `O_NONBLOCK`
    makes that open return at once even for a named pipe without a writer, where a plain open
    waits forever."""
    try:
        _require_regular(os.stat(path).st_mode, path)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        reason = _OPEN_ERRORS.get(exc.errno or 0, f"cannot open ({exc.strerror or exc})")
        raise InputError(str(path), reason) from exc
    try:
        _require_regular(os.fstat(fd).st_mode, path)
    except InputError:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def _require_regular(mode: int, path: str | Path) -> None:
    if stat.S_ISDIR(mode):
        raise InputError(str(path), "is a directory, not an image")
    if not stat.S_ISREG(mode):
        kind = _NOT_REGULAR.get(stat.S_IFMT(mode), "not a regular file")
        reason = f"is {kind}, not a regular file: only regular files are read as images"
        raise InputError(str(path), reason)


def _decode(file: BinaryIO, path: str | Path, draft_for: int | None) -> Image.Image:
    """The open file's first frame, decoded upright in RGB (see `load_rgb`)."""
    try:
        with Image.open(file, formats=openable_formats()) as img:
            img.seek(0)
            _draft(img, draft_for)
            _refuse_bombs(img, path)
            img.load()
            return to_rgb(_upright(img))
    except UnidentifiedImageError as exc:
        reason = (
            f"cannot identify image file: not a photo cnn reads ({', '.join(openable_formats())}"
            "); convert it to one of those"
        )
        raise InputError(str(path), reason) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        reason = f"cannot decode image ({exc}); the file may be truncated"
        raise InputError(str(path), reason) from exc


def _upright(img: Image.Image) -> Image.Image:
    """`img` turned as its EXIF orientation says; as stored when there is none it can read.

    Not `ImageOps.exif_transpose`: that also rewrites the EXIF for the turned image, which is
    wasted work here and raises on tags Pillow read but cannot write back."""
    transpose = _UPRIGHT.get(img.getexif().get(ExifTags.Base.Orientation))
    return img.transpose(transpose) if transpose is not None else img


def _draft(img: Image.Image, draft_for: int | None) -> None:
    """Ask a JPEG for its reduced-scale decode (see `load_rgb`); other formats ignore it."""
    if draft_for is not None:
        img.draft("RGB", scaled_size(img.size, draft_for))
        return
    width, height = img.size
    fits = (s for s in (1, 2, 4, 8) if -(-width // s) * -(-height // s) <= MAX_PIXELS)
    scale = next(fits, 8)
    if scale > 1:
        img.draft("RGB", (width // scale, height // scale))


def _refuse_bombs(img: Image.Image, path: str | Path) -> None:
    """Refuse images whose decoded pixels would exhaust memory, before decoding them."""
    width, height = img.size
    if width * height > MAX_PIXELS:
        raise InputError(
            str(path),
            f"{width}x{height} pixels to decode exceeds the {MAX_PIXELS:,}-pixel limit "
            "(a possible decompression bomb); downscale the image first",
        )


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB, compositing transparency onto white."""
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        img = _to_8bit_gray(img)
    if img.mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def _to_8bit_gray(img: Image.Image) -> Image.Image:
    """Scale a 16-bit, 32-bit or float greyscale image to 0-255, as Pillow would clip it."""
    import numpy as np

    values = np.nan_to_num(np.asarray(img, dtype=np.float64))
    white = _white_point(img.mode, float(values.max(initial=0)))
    return Image.fromarray(np.clip(np.rint(values * (255.0 / white)), 0, 255).astype(np.uint8))


def _white_point(mode: str, peak: float) -> float:
    """The value that means white. A 16-bit mode says it; 32-bit integers and floats do not, so
    it is the smallest usual range that holds the data: 0-1 (floats only), 0-255, 0-65535."""
    if mode.startswith("I;16"):
        return 65535.0
    ranges = (1.0, 255.0, 65535.0) if mode == "F" else (255.0, 65535.0)
    return next((white for white in ranges if peak <= white), peak)


def fit(img: Image.Image, size: int, resize: Resize) -> Image.Image:
    """The `size` x `size` view of `img` that the model sees under the given policy."""
    if resize is Resize.stretch:
        return img.resize((size, size), Image.BILINEAR)
    # The centre crop of the scaled photo, resampled in one pass from just the source pixels
    # it covers: the same filter and geometry (to rounding) at about half the cost.
    (width, height), (scaled_width, scaled_height) = img.size, scaled_size(img.size, size)
    x, y = width / scaled_width, height / scaled_height
    left, top, right, bottom = crop_box(img.size, size)
    return img.resize((size, size), Image.BILINEAR, box=(left * x, top * y, right * x, bottom * y))


def scaled_size(original: tuple[int, int], size: int) -> tuple[int, int]:
    """Image size after the crop policy's resize: shorter side to round(size / 0.875)."""
    width, height = original
    short = round(size / CROP_FRACTION)
    scale = short / min(width, height)
    return max(size, round(width * scale)), max(size, round(height * scale))


def crop_box(original: tuple[int, int], size: int) -> tuple[int, int, int, int]:
    """The centre square (left, top, right, bottom) cut from the scaled image."""
    width, height = scaled_size(original, size)
    left, top = (width - size) // 2, (height - size) // 2
    return left, top, left + size, top + size


def load_array(path: str | Path, size: int, resize: Resize) -> np.ndarray:
    """The photo at `path` as a float32 (size, size, 3) RGB array in 0-255, ready to preprocess:
    the one way every command turns a photo into a model's pixels, so it scores the same in each.

    Only the crop policy decodes JPEGs in draft mode: stretch stays the plain Keras pipeline (a
    full decode), except for a JPEG over `MAX_PIXELS`, which it decodes at the largest reduced
    scale under the limit rather than refuse it."""
    return pixels(load_rgb(path, size if resize is Resize.crop else None), size, resize)


def pixels(photo: Image.Image, size: int, resize: Resize) -> np.ndarray:
    """An upright RGB photo as a model's input: float32 (size, size, 3) in 0-255."""
    import numpy as np

    return np.asarray(fit(photo, size, resize), dtype=np.float32)


def from_array(array: np.ndarray) -> Image.Image:
    """A photo held in memory (Python API) as an RGB image: an (H, W, 3) RGB or (H, W) grey
    array of 0-255 values (uint8, or floats, rounded), or (H, W, 4) with alpha."""
    import numpy as np

    values = np.asarray(array)
    if values.ndim not in (2, 3) or (values.ndim == 3 and values.shape[2] not in (3, 4)):
        raise ValueError(f"an image array is (H, W), (H, W, 3) or (H, W, 4), not {values.shape}")
    return to_rgb(Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8)))
