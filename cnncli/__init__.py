"""cnncli: classify photos with pretrained Keras ImageNet CNNs, compare them, read their anatomy.

The package is a library first (`api`, below); `cnn`, the command line, is a client of it.

    import cnncli
    model = cnncli.load("resnet50")
    model.classify("cat.jpg", top=3)[0].predictions[0].label
"""

__version__ = "0.1.0"

from cnncli.api import Model, compare, evaluate, explain, load, models, montage, summary

__all__ = [
    "Model",
    "__version__",
    "compare",
    "evaluate",
    "explain",
    "load",
    "models",
    "montage",
    "summary",
]
