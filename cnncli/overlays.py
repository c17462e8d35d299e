"""Grad-CAM heatmaps as pictures: mapped back onto the photo, blended over it, side by side in a
montage, and as coloured blocks in a terminal.

A heatmap covers what the model saw: the centre square under `--resize crop` (the rest of the
photo is greyed out as not seen), the whole photo under `stretch`. Colours come from one
perceptually even colormap, so equal steps of heat look like equal steps of colour.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from rich.color import Color
from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.style import Style
from rich.text import Text

from cnncli.choices import Resize
from cnncli.errors import CnnError
from cnncli.images import crop_box, scaled_size

#: Matplotlib colormap of every rendering: Google's "turbo", jet's hues without jet's false
#: bands, so equal steps of heat look like equal steps of colour.
COLORMAP = "turbo"
#: Brightness of the greyed-out area the model never saw (outside the centre crop).
UNSEEN_BRIGHTNESS = 0.3
#: Width of the terminal rendering in characters (each character is two heat cells stacked).
TERMINAL_COLUMNS = 24
#: Without colour, heat as shading: blank for none, a full block for the most.
SHADES = " ░▒▓█"
#: Height in pixels of each panel of a montage.
PANEL_HEIGHT = 320
#: Dark background of caption strips and montages (RGB).
DARK = (20, 20, 20)


def heat_on_photo(
    photo: Image.Image, heat: np.ndarray, size: int, resize: Resize
) -> tuple[np.ndarray, np.ndarray]:
    """The heat at the photo's own size (H, W) in [0, 1], and the mask of what the model saw."""
    seen = _to_photo(np.ones_like(heat), photo.size, size, resize) > 0.5
    return _to_photo(heat, photo.size, size, resize), seen


def _to_photo(
    values: np.ndarray, photo_size: tuple[int, int], size: int, resize: Resize
) -> np.ndarray:
    """Undo `images.fit`: a map over the model's square, placed where that square came from."""
    square = Image.fromarray(values.astype(np.float32)).resize((size, size), Image.BILINEAR)
    if resize is Resize.crop:  # the square is the centre of the scaled photo; zero elsewhere
        canvas = Image.new("F", scaled_size(photo_size, size), 0.0)
        canvas.paste(square, crop_box(photo_size, size)[:2])
        square = canvas
    return np.asarray(square.resize(photo_size, Image.BILINEAR))


def colorize(heat: np.ndarray) -> np.ndarray:
    """8-bit RGB for heat in [0, 1], through `COLORMAP` (bytes: a 12-megapixel photo's colours
    take 36 MB, not the 384 MB of float RGBA)."""
    import matplotlib  # colormaps only: no pyplot, no backend

    return matplotlib.colormaps[COLORMAP](heat, bytes=True)[..., :3]


def overlay(
    photo: Image.Image,
    heat: np.ndarray,
    resize: Resize,
    size: int,
    caption: str = "",
    alpha: float = 0.5,
) -> Image.Image:
    """The photo with the heat blended in at `alpha`, the unseen area greyed out, and the caption
    (if any) on a dark strip along the bottom. Same size as the photo."""
    on_photo, seen = heat_on_photo(photo, heat, size, resize)
    base = np.asarray(photo.convert("RGB"), dtype=np.float32)
    blended = (1.0 - alpha) * base + alpha * colorize(on_photo).astype(np.float32)
    unseen = base.mean(axis=2, keepdims=True) * UNSEEN_BRIGHTNESS
    pixels = np.where(seen[..., None], blended, unseen)
    image = Image.fromarray(np.clip(pixels.round(), 0, 255).astype(np.uint8))
    return _captioned(image, caption) if caption else image


def _font(height: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's default font, scaled to be legible on an image `height` pixels tall."""
    return ImageFont.load_default(size=max(12, height // 24))


def _captioned(image: Image.Image, caption: str) -> Image.Image:
    """`caption` in white on a translucent dark strip across the bottom of `image`."""
    draw = ImageDraw.Draw(image, "RGBA")
    font = _font(image.height)
    left, top, _, bottom = draw.textbbox((0, 0), caption, font=font)
    pad = max(4, (bottom - top) // 3)
    strip_top = image.height - (bottom - top) - 2 * pad
    draw.rectangle((0, strip_top, image.width, image.height), fill=(*DARK, 190))
    draw.text((pad - left, strip_top + pad - top), caption, font=font, fill="white")
    return image


def montage(panels: Sequence[tuple[Image.Image, str]], height: int = PANEL_HEIGHT) -> Image.Image:
    """One image with the panels side by side at a common height, each titled above
    (titles may have several lines)."""
    scaled = [
        image.resize((max(1, round(image.width * height / image.height)), height), Image.LANCZOS)
        for image, _ in panels
    ]
    font = _font(height)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    title_height = max(
        measure.multiline_textbbox((0, 0), title, font=font)[3] for _, title in panels
    )
    gap = max(6, height // 40)
    width = sum(image.width for image in scaled) + gap * (len(scaled) + 1)
    sheet = Image.new("RGB", (width, title_height + height + 3 * gap), DARK)
    draw = ImageDraw.Draw(sheet)
    x = gap
    for image, (_, title) in zip(scaled, panels, strict=True):
        draw.multiline_text((x, gap), title, font=font, fill="white")
        sheet.paste(image, (x, title_height + 2 * gap))
        x += image.width + gap
    return sheet


class _HeatBlocks:
    """The heatmap in a terminal: coloured half blocks (two heat cells per character), or
    shading characters when the console has no colour."""

    def __init__(self, heat: np.ndarray, columns: int = TERMINAL_COLUMNS) -> None:
        rows = max(2, 2 * round(columns * heat.shape[0] / heat.shape[1] / 2))
        image = Image.fromarray(heat.astype(np.float32)).resize((columns, rows), Image.BILINEAR)
        grid = np.clip(np.asarray(image), 0.0, 1.0)
        self.upper, self.lower = grid[0::2], grid[1::2]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        lines = self._coloured() if console.color_system else self._shaded()
        yield Text("\n").join(lines)

    def _coloured(self) -> list[Text]:
        upper, lower = colorize(self.upper).astype(int), colorize(self.lower).astype(int)
        return [
            Text.assemble(
                *(
                    ("▀", Style(color=Color.from_rgb(*fg), bgcolor=Color.from_rgb(*bg)))
                    for fg, bg in zip(top, bottom, strict=True)
                )
            )
            for top, bottom in zip(upper, lower, strict=True)
        ]

    def _shaded(self) -> list[Text]:
        mean = (self.upper + self.lower) / 2
        levels = np.minimum((mean * len(SHADES)).astype(int), len(SHADES) - 1)
        return [Text("".join(SHADES[level] for level in row)) for row in levels]


def terminal_blocks(heat: np.ndarray, columns: int = TERMINAL_COLUMNS) -> RenderableType:
    """A small rendering of `heat` for the terminal, `columns` characters wide."""
    return _HeatBlocks(heat, columns)


def output_paths(output: Path, count: int) -> list[Path]:
    """Where `count` overlays go: OUT.png itself, then OUT_2.png, OUT_3.png, ..."""
    return [output] + [
        output.with_name(f"{output.stem}_{n}{output.suffix}") for n in range(2, count + 1)
    ]


def save(image: Image.Image, path: Path) -> None:
    """Write `image` to `path` (format from the extension); a `CnnError` saying why if not."""
    try:
        image.save(path)
    except ValueError as exc:  # Pillow: unknown extension
        raise CnnError(f"cannot write {path} ({exc}): give a .png or .jpg path") from exc
    except OSError as exc:
        raise CnnError(f"cannot write {path} ({exc.strerror or exc})") from exc
