"""The Python API: what every `cnn` command does, in a few calls from a notebook or a script.

    import cnncli

    model = cnncli.load("resnet50")             # ImageNet weights; LiteRT when it is installed
    for result in model.classify(["cat.jpg", "dog.jpg"], top=3):
        print(result.image, result.predictions[0].label, result.predictions[0].score)

    cnncli.compare("cat.jpg", ["vgg16", "resnet50"]).majority
    cnncli.summary("vgg16").params_by_kind["dense"]
    cnncli.explain("cat.jpg", "resnet50")[0].overlay().save("cam.png")

The command line is a client of these functions, so they return what its JSON prints: each
result's `as_dict()` is the record `cnn classify --format json` writes for that image.
Messages (a warning about random weights, a conversion under way) go to `env`'s stderr;
by default, the process's.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

from cnncli import registry
from cnncli.choices import Engine, Precision, Resize
from cnncli.env import Environment
from cnncli.loader import Weights

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from cnncli.anatomy import Anatomy
    from cnncli.classify import ImageResult
    from cnncli.comparison import Comparison
    from cnncli.engines import Classifier
    from cnncli.gradcam import Explanation
    from cnncli.inputs import Entry

#: A photo: a file's path, or the picture itself (an RGB or grey array of 0-255 values, or a
#: Pillow image).
ImageLike = Union[str, os.PathLike, "np.ndarray", "Image.Image"]
#: Weights as the command line names them (`imagenet`, `none`, a file's path), or parsed.
WeightsLike = str | os.PathLike | Weights


@dataclass
class Model:
    """A loaded classifier: an architecture with its weights, on the engine that runs it."""

    classifier: Classifier
    env: Environment = field(default_factory=Environment, repr=False)

    @property
    def arch(self) -> registry.Arch:
        return self.classifier.arch

    @property
    def engine(self) -> str:
        return self.classifier.engine

    def classify(
        self,
        images: ImageLike | Iterable[ImageLike],
        top: int = 5,
        resize: Resize | str = Resize.crop,
        batch_size: int = 16,
    ) -> list[ImageResult]:
        """The `top` classes of each image, in order. A file that cannot be read is a result
        with an `error`, as on the command line; the others are classified all the same."""
        from cnncli import pipeline

        entries = [_entry(index, image) for index, image in enumerate(_listed(images))]
        return pipeline.classify_entries(self.classifier, entries, top, Resize(resize), batch_size)


def load(
    arch: str = "resnet50",
    weights: WeightsLike = "imagenet",
    engine: Engine | str = Engine.auto,
    env: Environment | None = None,
    precision: Precision | str = Precision.fp32,
    calibrate: str | os.PathLike | None = None,
) -> Model:
    """The classifier `cnn classify -a ARCH -w WEIGHTS -e ENGINE --precision P --calibrate C`
    runs (`calibrate`: a folder or glob of photos for int8; default, the sample images)."""
    from cnncli.engines import open_classifier, warn_if_random

    env = env or Environment()
    record, source = registry.get(arch), _weights(weights)
    warn_if_random(env, [(record, source)])
    classifier = open_classifier(
        record, source, Engine(engine), env, Precision(precision), _path(calibrate)
    )
    return Model(classifier, env)


def compare(
    image: ImageLike,
    archs: Sequence[str] = registry.COMPARED,
    weights: WeightsLike | Sequence[WeightsLike] = "imagenet",
    engine: Engine | str = Engine.auto,
    top: int = 5,
    resize: Resize | str = Resize.crop,
    env: Environment | None = None,
    precision: Precision | str = Precision.fp32,
    calibrate: str | os.PathLike | None = None,
) -> Comparison:
    """`cnn compare`: each architecture on the same photo, at its own input size and
    preprocessing; `weights` is one source for all or one per architecture."""
    from cnncli import comparison
    from cnncli.engines import check_precision, open_classifier, warn_if_random

    env = env or Environment()
    pairs = _paired([registry.get(name) for name in archs], weights)
    choice, arithmetic, photos = Engine(engine), Precision(precision), _path(calibrate)
    check_precision(choice, arithmetic, photos)
    warn_if_random(env, pairs)
    models = [
        (arch, functools.partial(open_classifier, arch, source, choice, env, arithmetic, photos))
        for arch, source in pairs
    ]
    return comparison.compare(str(image), models, top, Resize(resize))


def explain(
    image: ImageLike,
    arch: str = "resnet50",
    weights: WeightsLike = "imagenet",
    classes: Sequence[str | int] = (),
    top: int = 1,
    resize: Resize | str = Resize.crop,
    env: Environment | None = None,
) -> list[Explanation]:
    """`cnn explain`: Grad-CAM heatmaps of `classes` (labels, indices or WordNet ids), else of
    the model's `top` classes. Always on Keras: Grad-CAM needs gradients."""
    from cnncli import gradcam, labels
    from cnncli.engines import keras_model, warn_if_random
    from cnncli.progress import status

    env = env or Environment()
    record, source = registry.get(arch), _weights(weights)
    warn_if_random(env, [(record, source)])
    targets = [labels.resolve_class(str(query)).index for query in classes]
    model = keras_model(record, source, env)
    with status(env, f"Grad-CAM with {record.name}"):
        return gradcam.explain(model, record, str(image), targets, top, Resize(resize))


def montage(
    image: ImageLike,
    comparison: Comparison,
    resize: Resize | str = Resize.crop,
    env: Environment | None = None,
) -> Image.Image:
    """`cnn compare --montage`: a panel per compared model, each its Grad-CAM of its own top-1,
    each model built on Keras when its turn comes (one in memory at a time)."""
    from cnncli import gradcam
    from cnncli.engines import keras_model

    env = env or Environment()
    models: list[tuple[registry.Arch, Callable[[], Any]]] = []
    for run in comparison.runs:
        record = registry.get(run.arch)
        source = Weights.parse(run.weights)
        models.append((record, functools.partial(keras_model, record, source, env)))
    top1 = [run.predictions[0].index for run in comparison.runs]
    explanations = gradcam.explain_each(str(image), models, top1, Resize(resize))
    return gradcam.comparison_montage(explanations)


def summary(arch: str, env: Environment | None = None) -> Anatomy:
    """`cnn summary`: the architecture's parameters, compute and activation memory, measured on
    the model built with random weights (no download)."""
    from cnncli import anatomy
    from cnncli.loader import build
    from cnncli.progress import status

    record = registry.get(arch)
    with status(env or Environment(), f"building {record.name}"):
        return anatomy.analyse(build(record, Weights("none")), record)


def models() -> list[registry.Arch]:
    """`cnn models`: every registry record."""
    return list(registry.ARCHS.values())


def _path(path: str | os.PathLike | None) -> str | None:
    return None if path is None else os.fspath(path)


def _weights(weights: WeightsLike) -> Weights:
    return weights if isinstance(weights, Weights) else Weights.parse(os.fspath(weights))


def _paired(
    records: Sequence[registry.Arch], weights: WeightsLike | Sequence[WeightsLike]
) -> list[tuple[registry.Arch, Weights]]:
    """Each record with its weights: one source for all, or one per record."""
    from cnncli.errors import UsageError

    given = [weights] if isinstance(weights, str | os.PathLike | Weights) else list(weights)
    sources = [_weights(w) for w in given]
    if len(sources) not in (1, len(records)):
        raise UsageError(
            f"--weights gives {len(sources)} sources for {len(records)} archs: "
            "give one for all or one per arch"
        )
    return list(zip(records, sources * len(records) if len(sources) == 1 else sources, strict=True))


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
