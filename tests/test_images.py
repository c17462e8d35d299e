"""Reading every kind of image file, and the two resize policies."""

from __future__ import annotations

import io
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from cnncli.choices import Resize
from cnncli.errors import InputError
from cnncli.images import crop_box, fit, load_array, load_rgb, scaled_size
from cnncli.inputs import Inputs
from tests.conftest import PHOTOS, SAMPLES


def save(img: Image.Image, path, **kwargs):
    img.save(path, **kwargs)
    return path


def test_grayscale_becomes_three_equal_channels(tmp_path):
    path = save(Image.new("L", (10, 8), 77), tmp_path / "g.png")
    arr = np.asarray(load_rgb(path))
    assert arr.shape == (8, 10, 3) and (arr == 77).all()


@pytest.mark.parametrize("mode, colour", [("RGBA", (255, 0, 0, 0)), ("LA", (10, 0))])
def test_transparent_pixels_composite_on_white(tmp_path, mode, colour):
    path = save(Image.new(mode, (4, 4), colour), tmp_path / "a.png")
    assert (np.asarray(load_rgb(path)) == 255).all()


def test_half_transparent_red_becomes_pink(tmp_path):
    path = save(Image.new("RGBA", (2, 2), (255, 0, 0, 128)), tmp_path / "a.png")
    r, g, b = np.asarray(load_rgb(path))[0, 0]
    assert r == 255 and 120 <= g <= 135 and g == b


def test_palette_with_transparency(tmp_path):
    img = Image.new("P", (4, 4), 0)
    img.putpalette([0, 0, 255] + [0] * 765)
    path = save(img, tmp_path / "p.png", transparency=0)
    assert (np.asarray(load_rgb(path)) == 255).all()


def test_cmyk_jpeg(tmp_path):
    path = save(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), tmp_path / "c.jpg")
    r, g, b = np.asarray(load_rgb(path)).reshape(-1, 3).mean(axis=0)
    assert r > 200 and g < 60 and b < 60


def test_sixteen_bit_grayscale_is_scaled_not_clipped(tmp_path):
    values = np.full((4, 4), 32768, dtype=np.uint16)
    path = save(Image.fromarray(values), tmp_path / "deep.png")
    assert Image.open(path).mode.startswith("I")
    arr = np.asarray(load_rgb(path))
    assert np.all(np.abs(arr.astype(int) - 127) <= 1)


@pytest.mark.parametrize(
    "name, values, expected",
    [
        ("float 0-1", np.array([[0.0, 0.25, 0.5, 1.0]], np.float32), [0, 64, 128, 255]),
        ("float 0-255", np.array([[0.0, 64.0, 128.0, 255.0]], np.float32), [0, 64, 128, 255]),
        ("16-bit", np.array([[0, 16448, 32896, 65535]], np.uint16), [0, 64, 128, 255]),
        ("16-bit dark", np.array([[0, 100, 200, 255]], np.uint16), [0, 0, 1, 1]),
        ("32-bit", np.array([[0, 16448, 32896, 65535]], np.int32), [0, 64, 128, 255]),
    ],
)
def test_deep_greyscale_tiffs_are_scaled_by_their_range(tmp_path, name, values, expected):
    """A float TIFF in 0..1 was once classified as a black image."""
    path = save(Image.fromarray(values), tmp_path / "deep.tif")
    arr = np.asarray(load_rgb(path))
    assert arr[0, :, 0].tolist() == expected and (arr == arr[..., :1]).all()


def test_animated_gif_uses_first_frame(tmp_path):
    frames = [Image.new("RGB", (6, 6), c) for c in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    r, _, b = np.asarray(load_rgb(path))[3, 3]
    assert r > 200 and b < 50


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 20, 20))  # white on the left half
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: viewer turns it 90 degrees clockwise
    path = save(img, tmp_path / "rot.jpg", exif=exif)
    upright = load_rgb(path)
    assert upright.size == (20, 40)
    arr = np.asarray(upright).mean(axis=(1, 2))
    assert arr[:20].mean() > 200 and arr[20:].mean() < 50  # white now on top


def exif(*entries: tuple[int, int, int, bytes]) -> bytes:
    """An APP1 EXIF block holding one IFD of (tag, type, count, 4-byte value) entries."""
    ifd = struct.pack(">H", len(entries)) + b"".join(
        struct.pack(">HHI", tag, kind, count) + value for tag, kind, count, value in entries
    )
    return b"Exif\x00\x00MM\x00\x2a" + struct.pack(">I", 8) + ifd + bytes(4)


ROTATED = (0x0112, 3, 1, struct.pack(">HH", 6, 0))  # Orientation: turn 90 degrees clockwise


def test_exif_pillow_cannot_write_back_still_turns_the_photo(tmp_path):
    """A tag of the wrong type (Predictor as text) made Pillow's exif_transpose raise."""
    path = save(
        Image.new("RGB", (16, 8)),
        tmp_path / "odd.jpg",
        exif=exif(ROTATED, (0x013D, 2, 4, b"abc\x00")),
    )
    assert load_rgb(path).size == (8, 16)


def test_a_photo_with_unreadable_exif_is_read_as_stored(tmp_path):
    path = save(Image.new("RGB", (16, 8)), tmp_path / "cut.jpg", exif=exif(ROTATED)[:18])
    assert load_rgb(path).size == (16, 8)


def test_shared_exif_dog_is_read_upright():
    path = PHOTOS / "dog_exif_orientation6.jpg"
    if not path.is_file():
        pytest.skip("../shared/photos is absent")
    assert Image.open(path).size == (341, 512)
    assert load_rgb(path).size == (512, 341)


def test_crop_geometry_for_224():
    assert scaled_size((640, 480), 224) == (341, 256)
    assert crop_box((640, 480), 224) == (58, 16, 282, 240)
    assert scaled_size((32, 32), 299) == (342, 342)


def test_crop_is_the_centre_of_the_scaled_photo(tmp_path):
    img = Image.new("RGB", (400, 200), (0, 0, 255))
    img.paste((255, 0, 0), (150, 0, 250, 200))  # red vertical band in the middle
    out = np.asarray(fit(img, 100, Resize.crop))
    assert out.shape == (100, 100, 3)
    assert out[50, 50, 0] == 255 and out[50, 0, 2] == 255  # band centred, blue at the edges


def test_stretch_is_pillow_bilinear(tmp_path):
    photo = load_rgb(SAMPLES / "cat.jpg")
    expected = np.asarray(photo.resize((224, 224), Image.BILINEAR), dtype=np.float32)
    np.testing.assert_array_equal(load_array(SAMPLES / "cat.jpg", 224, Resize.stretch), expected)


@pytest.mark.parametrize(
    "content, reason",
    [(b"", "cannot identify"), (b"hello, not an image", "cannot identify")],
)
def test_non_images_are_refused_per_file(tmp_path, content, reason):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(InputError, match=reason) as info:
        load_rgb(path)
    assert str(path) in str(info.value)


def test_truncated_jpeg_is_refused(tmp_path):
    data = (SAMPLES / "cat.jpg").read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated"):
        load_rgb(path)


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    path = save(Image.new("1", (10_000, 9_000)), tmp_path / "bomb.png")
    with pytest.raises(InputError, match="decompression bomb") as info:
        load_rgb(path)
    assert info.value.reason == (
        "10000x9000 pixels to decode exceeds the 89,478,485-pixel limit "
        "(a possible decompression bomb); downscale the image first"
    )


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares its size and holds no pixels: all a decompression bomb needs."""
    ihdr = b"IHDR" + struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    chunk = struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk + b"\x00\x00\x00\x00IEND\xaeB`\x82"


def test_a_bomb_over_twice_pillows_limit_gets_our_one_line_too(tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(png_header(20_000, 20_000))  # Pillow itself raises at open above 2x
    with pytest.raises(InputError) as info:
        load_rgb(path)
    assert info.value.reason.startswith("20000x20000 pixels to decode exceeds the 89,478,485")


def flat_jpeg(width: int, height: int) -> bytes:
    """A grey baseline JPEG of any size in little memory: the headers of a Pillow JPEG with the
    size patched, and a scan of identical blocks (each a zero DC difference, "00", and an
    end-of-block, "1010", in the standard Huffman tables), so no pixel array is ever built."""
    small = io.BytesIO()
    Image.new("L", (8, 8), 128).save(small, "JPEG")
    data = small.getvalue()
    sof = data.index(b"\xff\xc0")
    data = data[: sof + 5] + struct.pack(">HH", height, width) + data[sof + 9 :]
    sos = data.index(b"\xff\xda")
    headers = data[: sos + 2 + struct.unpack(">H", data[sos + 2 : sos + 4])[0]]
    bits = "001010" * (-(-width // 8) * -(-height // 8))
    bits += "1" * (-len(bits) % 8)  # pad the last byte with ones, as JPEG requires
    return headers + int(bits, 2).to_bytes(len(bits) // 8, "big") + b"\xff\xd9"


@pytest.mark.parametrize("width, height", [(11_700, 8_750), (16_000, 12_000)])
def test_a_huge_camera_jpeg_is_judged_by_the_pixels_it_decodes(tmp_path, width, height):
    """102 and 192 megapixels (over Pillow's limit, and over twice it) decode at 1/8 scale."""
    path = tmp_path / "camera.jpg"
    path.write_bytes(flat_jpeg(width, height))
    assert load_rgb(path, draft_for=224).size == (-(-width // 8), -(-height // 8))
    pixels = load_array(path, 224, Resize.crop)
    assert pixels.shape == (224, 224, 3) and np.all(pixels == 128)


def test_stretch_decodes_a_huge_jpeg_at_the_largest_scale_under_the_limit(tmp_path):
    path = tmp_path / "camera.jpg"
    path.write_bytes(flat_jpeg(10_000, 9_000))  # 90 MP: 1/2 scale is the largest under 89.5
    assert load_rgb(path).size == (5_000, 4_500)  # smaller photos stay full size, as below
    assert np.all(load_array(path, 224, Resize.stretch) == 128)


def test_only_regular_files_are_opened_as_images(tmp_path):
    os.mkfifo(tmp_path / "pipe.jpg")  # a plain open would wait for a writer forever
    with pytest.raises(InputError, match=r"pipe.jpg: is a named pipe \(FIFO\), not a regular"):
        load_rgb(tmp_path / "pipe.jpg")
    with pytest.raises(InputError, match="is a character device, not a regular file"):
        load_rgb("/dev/zero")
    with pytest.raises(InputError, match="is a directory, not an image"):
        load_rgb(tmp_path)


def test_a_symlink_loop_is_named_as_one(tmp_path):
    (tmp_path / "loop.jpg").symlink_to("loop.jpg")
    [entry] = Inputs((str(tmp_path),)).entries()
    with pytest.raises(InputError, match=r"loop\.jpg: a symlink loop: the link leads back"):
        load_rgb(entry.image)


#: Files with extensions Pillow registers that are no photos: documents, video, data, drawings.
NOT_PHOTOS = {
    "doc.pdf": b"%PDF-1.4\n%%EOF\n",
    "figure.eps": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n",
    "page.ps": b"%!PS-Adobe-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n",
    "clip.mpg": b"\x00\x00\x01\xb3\x01\x40\xf0\x13" + bytes(64),
    "weights.h5": b"\x89HDF\r\n\x1a\n" + bytes(64),
    "sky.fits": b"SIMPLE  =                    T" + b" " * 50,
    "data.grib": b"GRIB" + bytes(64),
    "drawing.wmf": b"\xd7\xcd\xc6\x9a" + bytes(64),
}


def test_files_pillow_registers_but_that_are_no_photos_are_skipped(tmp_path):
    for name, content in NOT_PHOTOS.items():
        (tmp_path / name).write_bytes(content)
    save(Image.new("RGB", (8, 8)), tmp_path / "photo.jpg")
    skipped: list[tuple[str, str]] = []
    entries = list(Inputs((str(tmp_path),)).entries(skipped=lambda *s: skipped.append(s)))
    assert [e.image for e in entries] == [str(tmp_path / "photo.jpg")]
    assert sorted(skipped) == [
        (str(tmp_path / name), "not an image file, by its extension") for name in sorted(NOT_PHOTOS)
    ]


@pytest.mark.parametrize("name", sorted(NOT_PHOTOS))
def test_a_non_photo_named_explicitly_is_one_clear_error(tmp_path, name):
    """Only photo formats are opened: EPS never reaches Ghostscript, HDF5 never divides by 0."""
    path = tmp_path / name
    path.write_bytes(NOT_PHOTOS[name])
    with pytest.raises(InputError, match="cannot identify image file: not a photo cnn reads"):
        load_rgb(path)


def test_missing_file_and_directory():
    with pytest.raises(InputError, match="no such file"):
        load_rgb("/nonexistent/photo.jpg")


def test_expand_directories_globs_and_missing(tmp_path):
    for name in ("b.jpg", "a.PNG", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    arguments = ("", "*.jpg", "*.gif", "missing.jpg", "sub")
    entries = list(Inputs(tuple(str(tmp_path / a) for a in arguments)).entries())
    assert [(e.image, e.error is None) for e in entries] == [
        (str(tmp_path / "a.PNG"), True),
        (str(tmp_path / "b.jpg"), True),
        (str(tmp_path / "b.jpg"), True),
        (str(tmp_path / "*.gif"), False),
        (str(tmp_path / "missing.jpg"), False),
        (str(tmp_path / "sub"), False),
    ]


def photo_like(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth colour gradients with mild noise: what JPEG draft mode is meant for."""
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    base = np.stack([x, y, (x + y) / 2], axis=-1) * 255
    noise = np.random.default_rng(seed).normal(0, 3, base.shape)
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def test_crop_is_the_scaled_photos_centre_to_rounding():
    photo = load_rgb(SAMPLES / "grace_hopper.jpg")
    for size in (224, 299):
        scaled = photo.resize(scaled_size(photo.size, size), Image.BILINEAR)
        expected = np.asarray(scaled.crop(crop_box(photo.size, size)), dtype=int)
        assert np.abs(np.asarray(fit(photo, size, Resize.crop), dtype=int) - expected).max() <= 2


def test_large_jpeg_decodes_in_draft_mode_at_no_less_than_the_crop_needs(tmp_path):
    path = save(photo_like(2400, 1800), tmp_path / "big.jpg", quality=90)
    assert load_rgb(path).size == (2400, 1800)
    # The crop for 224 resizes to 341x256 first: 1/8 (300x225) would be short of that.
    assert load_rgb(path, draft_for=224).size == (600, 450)
    assert load_rgb(path, draft_for=128).size == (300, 225)
    assert load_rgb(path, draft_for=600).size == (1200, 900)
    drafted = load_array(path, 224, Resize.crop)
    full = np.asarray(fit(load_rgb(path), 224, Resize.crop), dtype=np.float32)
    assert np.abs(drafted - full).mean() < 2.0


def test_draft_mode_keeps_exif_rotation(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    path = save(photo_like(2400, 1600), tmp_path / "rot.jpg", exif=exif)
    assert load_rgb(path, draft_for=224).size == (400, 600)


def test_stretch_never_uses_draft_mode(tmp_path):
    path = save(photo_like(2400, 1800), tmp_path / "big.jpg")
    expected = np.asarray(load_rgb(path).resize((224, 224), Image.BILINEAR), dtype=np.float32)
    np.testing.assert_array_equal(load_array(path, 224, Resize.stretch), expected)
