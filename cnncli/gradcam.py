"""Grad-CAM (Selvaraju et al. 2017): where in the photo a network found the evidence for a class.

The gradient of a class's score with respect to the last convolutional feature map, averaged over
its positions, says how much each channel matters for that class; the ReLU of the channels'
weighted sum, divided by its maximum, is the heatmap at the feature map's resolution (7x7 for most
224-px models), over what the model saw of the photo.

The score is the class's logit, before the softmax, as in the paper: the gradient of the softmax
probability also credits evidence *against* the other classes, and it fades as the probability
saturates (it carries a factor p(1 - p)), so confident predictions would give faint, noisy maps.
Every registry model ends in a softmax (a Dense layer with softmax activation, or a softmax
Activation layer), and so does a trained model (its base's layers under their registry names,
then pooling, dropout and a softmax Dense layer), so the logits are one step back from the output
and the record's feature layer is found in both.

Grad-CAM always runs on Keras: it needs gradients. The pictures drawn from a heatmap are
`overlays`'.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from rich.console import RenderableType
from rich.text import Text

from cnncli import overlays
from cnncli.choices import Resize
from cnncli.images import load_array, load_rgb
from cnncli.labels import Class, Labels
from cnncli.networks import Network
from cnncli.output import CsvRows
from cnncli.preprocess import preprocess
from cnncli.registry import POOL_INPUT, Arch
from cnncli.tf_runtime import import_keras


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
        #: Softmax probabilities (classes,): what the model itself outputs.
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


@dataclass(frozen=True, eq=False)
class Explanation:
    """One class's Grad-CAM for one photo under one architecture."""

    image: str
    arch: Arch
    target: Class
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
        return overlays.overlay(
            self.photo, self.heat, self.resize, self.arch.input_size, caption, alpha
        )


def explain(
    model: Any,
    arch: Arch,
    labels: Labels,
    image: str | Path,
    classes: Sequence[int] | None,
    top: int,
    resize: Resize,
) -> list[Explanation]:
    """Grad-CAMs of `image`: for each of `classes` (indices into `labels`, the model's
    classes), else for the model's `top` best classes.

    The model sees the photo as `images.load_array` decodes it, like in every other command;
    the full photo is decoded apart, only to draw the overlay on."""
    cam = GradCam(model, arch, load_array(image, arch.input_size, resize)[None])
    photo = load_rgb(image)
    indices = list(classes) if classes else [p.index for p in labels.decode(cam.scores, top)]
    return [
        Explanation(str(image), arch, labels[i], float(cam.scores[i]), cam.heat(i), photo, resize)
        for i in indices
    ]


def explain_each(
    image: str | Path,
    models: Iterable[tuple[Network, Resize, Callable[[], Any]]],
    classes: Sequence[int],
) -> list[Explanation]:
    """For `cnn compare --montage`: each model's Grad-CAM of one class (the one it ranked
    first), on the picture its resize policy makes, each Keras model built only when its turn
    comes, so memory holds one at a time."""
    return [
        explain(build(), network.record, network.labels, image, [index], 1, resize)[0]
        for (network, resize, build), index in zip(models, classes, strict=True)
    ]


def comparison_montage(explanations: Sequence[Explanation], alpha: float = 0.5) -> Image.Image:
    """A panel per explanation, titled with its architecture, class and score."""
    return overlays.montage([(e.overlay(alpha, captioned=False), e.title) for e in explanations])


def save_overlays(explanations: Sequence[Explanation], output: Path, alpha: float) -> list[Path]:
    """Each explanation's overlay written to `overlays.output_paths(output, n)`; the paths
    written."""
    paths = overlays.output_paths(output, len(explanations))
    for explanation, path in zip(explanations, paths, strict=True):
        overlays.save(explanation.overlay(alpha), path)
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
        wnid = f"{e.target.wnid}, " if e.target.wnid else ""
        heading = (
            f"{e.image}  {e.arch.name}  {e.target.label} ({wnid}#{e.target.index})  "
            f"score {e.score:.4f}"
        )
        out.append(Text(heading, style="bold"))
        out.append(Text(f"  wrote {saved[i]}") if saved else overlays.terminal_blocks(e.heat))
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
