"""The one door to TensorFlow/Keras: quiet, and only opened by commands that run models.

Importing TensorFlow costs seconds and prints banners (oneDNN, absl, CPU features) from C++, some
whatever the logging variables say. Every module that needs Keras calls `import_keras()`, which
sets the variables and silences the descriptors around the first import so no banner reaches the
user, and keeps `cnn --help` and `cnn models` free of TensorFlow.
"""

from __future__ import annotations

import logging
import warnings
from functools import cache
from types import ModuleType

from cnncli.quiet import native_output_silenced, set_quiet_environment


@cache
def import_keras() -> ModuleType:
    """Import Keras (TensorFlow backend) with every start-up banner silenced."""
    set_quiet_environment()
    with warnings.catch_warnings(), native_output_silenced():
        warnings.simplefilter("ignore")
        import keras
        import tensorflow as tf

    keras.config.disable_interactive_logging()  # no "Downloading data from" or bars on stdout
    tf.get_logger().setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="keras")
    return keras
