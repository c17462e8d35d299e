"""The one door to TensorFlow/Keras: quiet, and only opened by commands that run models.

Importing TensorFlow costs seconds and prints banners (oneDNN, absl, CPU features). Every module
that needs Keras calls `import_keras()`, which sets the logging variables before the first import
so no banner reaches the user, and keeps `cnn --help` and `cnn models` free of TensorFlow.
"""

from __future__ import annotations

import logging
import os
import warnings
from functools import cache
from types import ModuleType

QUIET_ENVIRONMENT = {
    "TF_CPP_MIN_LOG_LEVEL": "3",  # C++ INFO/WARNING/ERROR lines, oneDNN and CPU-feature banners
    "ABSL_MIN_LOG_LEVEL": "3",
    "GRPC_VERBOSITY": "ERROR",
    "KERAS_BACKEND": "tensorflow",
}


@cache
def import_keras() -> ModuleType:
    """Import Keras (TensorFlow backend) with every start-up banner silenced."""
    for key, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import keras
        import tensorflow as tf

    keras.config.disable_interactive_logging()  # no "Downloading data from" or bars on stdout
    tf.get_logger().setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="keras")
    return keras
