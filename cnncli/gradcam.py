"""Grad-CAM (Selvaraju et al. 2017): where in the photo a network found the evidence for a class.

The gradient of a class's score with respect to the last convolutional feature map, averaged over
its positions, says how much each channel matters for that class; the ReLU of the channels'
weighted sum, divided by its maximum, is the heatmap at the feature map's resolution (7x7 for most
224-px models). Mapped back through the resize policy it covers what the model saw: the centre
square under `crop` (the rest of the photo is darkened as not seen), the whole photo under
`stretch`.

The score is the class's logit, before the softmax, as in the paper: the gradient of the softmax
probability also credits evidence *against* the other classes, and it fades as the probability
saturates (it carries a factor p(1 - p)), so confident predictions would give faint, noisy maps.
Every registry model ends in a softmax (a Dense layer with softmax activation, or a softmax
Activation layer), so the logits are one step back from the output.

Grad-CAM always runs on Keras: it needs gradients.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from rich.color import Color
from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.style import Style
from rich.text import Text

from cnncli import labels
from cnncli.errors import CnnError, UsageError
from cnncli.images import Resize, crop_box, load_array, load_rgb, scaled_size
from cnncli.labels import ImageNetClass
from cnncli.output import CsvRows
from cnncli.preprocess import preprocess
from cnncli.registry import POOL_INPUT, Arch
from cnncli.tf_runtime import import_keras

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


def feature_layer(model: Any, arch: Arch) -> Any:
    """The Keras operation whose output is the feature map Grad-CAM weighs.

    The registry's `feature_layer` name; for `POOL_INPUT` the operation that feeds the head's
    global average pooling (in ConvNeXt that is the unnamed `+` closing the last block). The
    head's pooling is the last one: earlier poolings are squeeze-and-excitation blocks.
    """
    if arch.feature_layer != POOL_INPUT:
        return model.get_layer(arch.feature_layer)
    keras = import_keras()
    pool = [op for op in model.layers if isinstance(op, keras.layers.GlobalAveragePooling2D)][-1]
    return next(op for op in model.operations if op.output is pool.input)


def split(model: Any, arch: Arch) -> tuple[Any, Any]:
    """Two models sharing `model`'s weights: input -> feature map, and feature map -> logits.

    Grad-CAM differentiates only the second: through the whole model, the tape would also
    backpropagate into every earlier layer (10 s instead of 1.7 s for ConvNeXt-Tiny on a CPU).
    Every registry model's feature map is its last block's output, so the head needs nothing else.
    """
    keras = import_keras()
    features = feature_layer(model, arch).output
    head = model.layers[-1]
    if isinstance(head, keras.layers.Dense):  # softmax(x @ kernel + bias): keep what is inside
        logits = keras.ops.matmul(head.input, head.kernel) + head.bias
    else:  # a softmax Activation: its input is the logits
        logits = head.input
    return keras.Model(model.input, features), keras.Model(features, logits)


class GradCam:
    """One image through one model, ready to explain any class: the feature map and the logits
    are computed once, then each class costs one backward pass through the head."""

    def __init__(self, model: Any, arch: Arch, pixels: np.ndarray) -> None:
        """`pixels` is (1, size, size, 3) RGB in 0-255; the record's preprocessing is applied."""
        import_keras()  # TensorFlow quietly, before its first import
        import tensorflow as tf

        body, head = split(model, arch)
        self.features = body(preprocess(pixels, arch.preprocessing), training=False)
        self.tape = tf.GradientTape(persistent=True, watch_accessed_variables=False)
        with self.tape:
            self.tape.watch(self.features)
            self.logits = head(self.features, training=False)
        #: Softmax probabilities (1000,): what the model itself outputs.
        self.scores = tf.nn.softmax(self.logits)[0].numpy()

    def heat(self, class_index: int) -> np.ndarray:
        """The heatmap (feature-map height, width) in [0, 1] of class `class_index`."""
        import tensorflow as tf

        pick = tf.one_hot([class_index], self.logits.shape[-1])  # d logit[class] / d features
        gradients = self.tape.gradient(self.logits, self.features, output_gradients=pick)
        weights = gradients.numpy()[0].mean(axis=(0, 1))  # per channel: its mean gradient
        return normalised(np.maximum(self.features.numpy()[0] @ weights, 0.0))


def gradcam(model: Any, arch: Arch, pixels: np.ndarray, class_index: int) -> np.ndarray:
    """The heatmap of class `class_index` for one image (see `GradCam`)."""
    return GradCam(model, arch, pixels).heat(class_index)


def normalised(cam: np.ndarray) -> np.ndarray:
    """`cam` divided by its maximum; a map with no positive evidence stays zero (not NaN)."""
    peak = float(cam.max(initial=0.0))
    return cam / peak if peak > 0 else np.zeros_like(cam)


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


@dataclass(frozen=True, eq=False)
class Explanation:
    """One class's Grad-CAM for one photo under one architecture."""

    image: str
    arch: Arch
    target: ImageNetClass
    score: float  # the model's softmax probability of `target`
    heat: np.ndarray  # (feature-map height, width) in [0, 1]
    photo: Image.Image = field(repr=False)
    resize: Resize = Resize.crop

    def as_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "arch": self.arch.name,
            "class": {
                "index": self.target.index,
                "wnid": self.target.wnid,
                "label": self.target.label,
                "score": self.score,
            },
            "heatmap": np.round(self.heat.astype(np.float64), 4).tolist(),
        }

    @property
    def caption(self) -> str:
        return f"{self.target.label} {self.score:.3f}"

    @property
    def title(self) -> str:
        """A montage panel's title: the architecture, then the class and score."""
        return f"{self.arch.name}\n{self.caption}"

    def overlay(self, alpha: float = 0.5, captioned: bool = True) -> Image.Image:
        """The heat drawn on the photo (see `overlay`)."""
        caption = self.caption if captioned else ""
        return overlay(self.photo, self.heat, self.resize, self.arch.input_size, caption, alpha)


def resolve_class(query: str) -> ImageNetClass:
    """The ImageNet class a user named by label, index or WordNet id; `UsageError` otherwise."""
    found = labels.find_class(query)
    if found is not None:
        return found
    names = [cls.label for cls in labels.classes()]
    close = difflib.get_close_matches(query.strip().replace(" ", "_"), names, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise UsageError(
        f"unknown ImageNet class '{query}': give a label (tabby), an index (0-999) or a WordNet "
        f"id (n02123045){hint}"
    )


def explain(
    model: Any,
    arch: Arch,
    image: str | Path,
    classes: Sequence[int] | None,
    top: int,
    resize: Resize,
) -> list[Explanation]:
    """Grad-CAMs of `image`: for each of `classes`, else for the model's `top` best classes.

    The model sees the photo as `images.load_array` decodes it, like in every other command;
    the full photo is decoded apart, only to draw the overlay on."""
    cam = GradCam(model, arch, load_array(image, arch.input_size, resize)[None])
    photo = load_rgb(image)
    indices = list(classes) if classes else [p.index for p in labels.decode(cam.scores, top)]
    table = labels.classes()
    return [
        Explanation(str(image), arch, table[i], float(cam.scores[i]), cam.heat(i), photo, resize)
        for i in indices
    ]


def explain_each(
    image: str | Path,
    models: Iterable[tuple[Arch, Callable[[], Any]]],
    classes: Sequence[int],
    resize: Resize,
) -> list[Explanation]:
    """For `cnn compare --explain`: each architecture's Grad-CAM of one class (the one it ranked
    first), each Keras model built only when its turn comes, so memory holds one at a time."""
    return [
        explain(build(), arch, image, [index], 1, resize)[0]
        for (arch, build), index in zip(models, classes, strict=True)
    ]


def comparison_montage(explanations: Sequence[Explanation], alpha: float = 0.5) -> Image.Image:
    """A panel per explanation, titled with its architecture, class and score."""
    return montage([(e.overlay(alpha, captioned=False), e.title) for e in explanations])


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


def save_overlays(explanations: Sequence[Explanation], output: Path, alpha: float) -> list[Path]:
    """Each explanation's overlay written to `output_paths(output, n)`; the paths written."""
    paths = output_paths(output, len(explanations))
    for explanation, path in zip(explanations, paths, strict=True):
        save(explanation.overlay(alpha), path)
    return paths


def document(
    weights: str, explanations: Sequence[Explanation], saved: Sequence[Path]
) -> dict[str, Any] | list[dict[str, Any]]:
    """The JSON of `cnn explain`: an explanation's object (`Explanation.as_dict`, plus the
    weights and the overlay written, or null), or a list of them when several classes were
    explained (`--top K`, several `--class`)."""
    outputs: Sequence[str | None] = [str(path) for path in saved] or [None] * len(explanations)
    items = [
        {**e.as_dict(), "weights": weights, "output": output}
        for e, output in zip(explanations, outputs, strict=True)
    ]
    return items[0] if len(items) == 1 else items


def render(explanations: Sequence[Explanation], saved: Sequence[Path]) -> list[RenderableType]:
    """Per explanation a heading line, then where its overlay went or the heat in blocks."""
    out: list[RenderableType] = []
    for i, e in enumerate(explanations):
        heading = (
            f"{e.image}  {e.arch.name}  {e.target.label} ({e.target.wnid}, #{e.target.index})  "
            f"score {e.score:.4f}"
        )
        out.append(Text(heading, style="bold"))
        out.append(Text(f"  wrote {saved[i]}") if saved else terminal_blocks(e.heat))
    return out


def rows(explanations: Sequence[Explanation], saved: Sequence[Path]) -> CsvRows:
    """CSV: one row per explained class (the heatmap itself is in the JSON)."""
    header = ("image", "arch", "index", "wnid", "label", "score", "output")
    outputs = [str(path) for path in saved] or [""] * len(explanations)
    body = [
        (e.image, e.arch.name, e.target.index, e.target.wnid, e.target.label, f"{e.score:.6g}", o)
        for e, o in zip(explanations, outputs, strict=True)
    ]
    return header, body
