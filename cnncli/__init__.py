"""cnncli: classify photos with pretrained Keras ImageNet CNNs, compare them, read their anatomy.

The package is a library first: `cli.py` is a thin layer of options over the modules below, and
everything it does can be called from Python.
"""

__version__ = "0.1.0"
