"""The Python API: what every `cnn` command does, in a few calls from a notebook or a script.

    import cnncli

    model = cnncli.load("resnet50")             # ImageNet weights; LiteRT when it is installed
    for result in model.classify(["cat.jpg", "dog.jpg"], top=3):
        print(result.image, result.predictions[0].label, result.predictions[0].score)

    birds = cnncli.load(model="runs/birds")     # a model `cnn train` wrote: its own classes
    cnncli.evaluate("photos/val", model="runs/birds").top1

    cnncli.compare("cat.jpg", ["vgg16", "resnet50"]).majority
    cnncli.summary("vgg16").params_by_kind["dense"]
    cnncli.explain("cat.jpg", "resnet50")[0].overlay().save("cam.png")

A trained model is always named by the keyword `model=` (never as an architecture), so a folder
that happens to be called `resnet50` is never mistaken for one. The command line is a client of
these functions, so they return what its JSON prints: each result's `as_dict()` is the record
`cnn classify --format json` writes for that image. Messages (a warning about random weights, a
conversion under way) go to `env`'s stderr; by default, the process's.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Union

from cnncli import registry
from cnncli.choices import Engine, Precision, Resize
from cnncli.env import Environment

if TYPE_CHECKING:  # `cnn --help` imports this module: no NumPy before a command runs
    import numpy as np
    from PIL import Image

    from cnncli.anatomy import Anatomy
    from cnncli.classify import ImageResult
    from cnncli.comparison import Comparison
    from cnncli.engines import Classifier
    from cnncli.evaluation import Evaluation
    from cnncli.gradcam import Explanation
    from cnncli.inputs import Entry
    from cnncli.labels import Labels
    from cnncli.networks import BundleLike, Network, WeightsLike

#: A photo: a file's path, or the picture itself (an RGB or grey array of 0-255 values, or a
#: Pillow image).
ImageLike = Union[str, os.PathLike, "np.ndarray", "Image.Image"]


@dataclass
class Model:
    """A loaded classifier: an architecture with its weights, or a trained model, on the engine
    that runs it."""

    classifier: Classifier
    env: Environment = field(default_factory=Environment, repr=False)

    @property
    def arch(self) -> registry.Arch:
        return self.classifier.arch

    @property
    def labels(self) -> Labels:
        """Its classes, in the order of its outputs."""
        return self.classifier.labels

    @property
    def engine(self) -> str:
        return self.classifier.engine

    def classify(
        self,
        images: ImageLike | Iterable[ImageLike],
        top: int = 5,
        resize: Resize | str | None = None,
        batch_size: int = 16,
    ) -> list[ImageResult]:
        """The `top` classes of each image, in order. A file that cannot be read is a result
        with an `error`, as on the command line; the others are classified all the same.
        `resize` None: the model's own (crop, or what a trained model was trained with)."""
        from cnncli import pipeline
        from cnncli.networks import resize_for

        entries = [_entry(index, image) for index, image in enumerate(_listed(images))]
        view = resize_for(self.classifier.network, _resize(resize), self.env)
        return pipeline.classify_entries(self.classifier, entries, top, view, batch_size)


def load(
    arch: str | None = None,
    weights: WeightsLike | None = None,
    engine: Engine | str = Engine.auto,
    env: Environment | None = None,
    *,
    model: BundleLike | None = None,
    precision: Precision | str = Precision.fp32,
    calibrate: str | os.PathLike | None = None,
) -> Model:
    """The classifier `cnn classify -a ARCH -w WEIGHTS -e ENGINE --precision P --calibrate C`
    runs (resnet50 with ImageNet weights by default), or `cnn classify --model BUNDLE`'s
    (`calibrate`: a folder or glob of photos for int8; default, the sample images)."""
    from cnncli.engines import open_classifier
    from cnncli.networks import named

    env = env or Environment()
    network = _warned(named(arch, weights, model), env)
    arithmetic = Precision(precision)
    return Model(open_classifier(network, Engine(engine), env, arithmetic, _path(calibrate)), env)


def compare(
    image: ImageLike,
    archs: Sequence[str] | None = None,
    weights: WeightsLike | Sequence[WeightsLike] | None = None,
    engine: Engine | str = Engine.auto,
    top: int = 5,
    resize: Resize | str | None = None,
    env: Environment | None = None,
    *,
    models: Sequence[BundleLike] = (),
    precision: Precision | str = Precision.fp32,
    calibrate: str | os.PathLike | None = None,
) -> Comparison:
    """`cnn compare`: each architecture (`registry.COMPARED` unless trained `models` are given)
    and each trained model on the same photo, at its own input size, preprocessing and resize
    policy; `weights` is one source for all architectures or one per architecture."""
    from cnncli import comparison
    from cnncli.engines import check_precision, open_classifier
    from cnncli.networks import resize_for, several, warn_if_random

    env = env or Environment()
    choice, arithmetic, photos = Engine(engine), Precision(precision), _path(calibrate)
    check_precision(choice, arithmetic, photos)
    networks = several(archs, weights, models)
    warn_if_random(env, networks)
    chosen = _resize(resize)
    runs = [
        (
            net,
            resize_for(net, chosen, env),
            functools.partial(open_classifier, net, choice, env, arithmetic, photos),
        )
        for net in networks
    ]
    return comparison.compare(str(image), runs, top)


def explain(
    image: ImageLike,
    arch: str | None = None,
    weights: WeightsLike | None = None,
    classes: Sequence[str | int] = (),
    top: int = 1,
    resize: Resize | str | None = None,
    env: Environment | None = None,
    *,
    model: BundleLike | None = None,
) -> list[Explanation]:
    """`cnn explain`: Grad-CAM heatmaps of `classes` (labels, indices or, for ImageNet models,
    WordNet ids), else of the model's `top` classes. Always on Keras: Grad-CAM needs
    gradients."""
    from cnncli import gradcam
    from cnncli.engines import keras_model
    from cnncli.networks import named, resize_for
    from cnncli.progress import status

    env = env or Environment()
    network = _warned(named(arch, weights, model), env)
    targets = [network.labels.resolve(str(query)).index for query in classes]
    view = resize_for(network, _resize(resize), env)
    built = keras_model(network, env)
    with status(env, f"Grad-CAM with {network.record.name}"):
        return gradcam.explain(
            built, network.record, network.labels, str(image), targets, top, view
        )


def montage(
    image: ImageLike, comparison: Comparison, env: Environment | None = None
) -> Image.Image:
    """`cnn compare --montage`: a panel per compared model, each its Grad-CAM of its own top-1
    on the picture it was compared on, each model built on Keras when its turn comes (one in
    memory at a time)."""
    from cnncli import gradcam
    from cnncli.engines import keras_model

    env = env or Environment()
    runs = [run for run in comparison.runs if run.network is not None]  # all but hand-made ones
    models = [(r.network, r.resize, functools.partial(keras_model, r.network, env)) for r in runs]
    top1 = [run.predictions[0].index for run in runs]
    return gradcam.comparison_montage(gradcam.explain_each(str(image), models, top1))


def evaluate(
    data: str | os.PathLike,
    arch: str | None = None,
    weights: WeightsLike | None = None,
    engine: Engine | str = Engine.auto,
    resize: Resize | str | None = None,
    batch_size: int = 16,
    worst: int = 10,
    env: Environment | None = None,
    *,
    model: BundleLike | None = None,
    precision: Precision | str = Precision.fp32,
    calibrate: str | os.PathLike | None = None,
) -> Evaluation:
    """`cnn evaluate`: the model's top-1 and top-5, per-class precision, recall and F1, its
    confusion matrix and worst mistakes over DATA's class folders (a trained model's classes,
    or ImageNet's named by WordNet id or label), in `precision` (int8: what it costs, measured
    on the user's own labelled photos)."""
    from cnncli import evaluation
    from cnncli.engines import open_classifier
    from cnncli.networks import named, resize_for

    env = env or Environment()
    network = _warned(named(arch, weights, model), env)
    folders = evaluation.class_folders(data, network.labels, env)
    view = resize_for(network, _resize(resize), env)
    arithmetic = Precision(precision)
    classifier = open_classifier(network, Engine(engine), env, arithmetic, _path(calibrate))
    return evaluation.evaluate(env, classifier, folders, view, batch_size, worst)


def summary(arch: str, env: Environment | None = None) -> Anatomy:
    """`cnn summary`: the architecture's parameters, compute and activation memory, measured on
    the model built with random weights (no download)."""
    from cnncli import anatomy
    from cnncli.loader import Weights, build
    from cnncli.progress import status

    record = registry.get(arch)
    with status(env or Environment(), f"building {record.name}"):
        return anatomy.analyse(build(record, Weights("none")), record)


def models() -> list[registry.Arch]:
    """`cnn models`: every registry record."""
    return list(registry.ARCHS.values())


def _warned(network: Network, env: Environment) -> Network:
    """`network`, after the warning its random weights call for."""
    from cnncli.networks import warn_if_random

    warn_if_random(env, [network])
    return network


def _path(path: str | os.PathLike | None) -> str | None:
    return None if path is None else os.fspath(path)


def _resize(resize: Resize | str | None) -> Resize | None:
    return None if resize is None else Resize(resize)


def _listed(images: ImageLike | Iterable[ImageLike]) -> list[ImageLike]:
    """One image, or many, as a list: a path or a picture is one image, not an iterable."""
    import numpy as np
    from PIL import Image

    if isinstance(images, str | os.PathLike | np.ndarray | Image.Image):
        return [images]
    return list(images)


def _entry(index: int, image: ImageLike) -> Entry:
    """What the pipeline classifies: a file by its path, a picture held in memory by its
    position (`array[0]`)."""
    from PIL import Image

    from cnncli.images import from_array, to_rgb
    from cnncli.inputs import Entry

    if isinstance(image, str | os.PathLike):
        return Entry(os.fspath(image))
    photo = to_rgb(image) if isinstance(image, Image.Image) else from_array(image)
    return Entry(f"array[{index}]", photo=photo)
