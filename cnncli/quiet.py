"""Keeping native libraries' own chatter off the user's terminal.

TensorFlow, its converter and the LiteRT runtime print banners and INFO lines from C++ straight
to file descriptors 1 and 2, past Python's `sys.stderr`. The log variables silence TensorFlow
before it loads; `native_output_silenced` covers the rest by pointing the descriptors at
/dev/null for the duration of a call.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

QUIET_ENVIRONMENT = {
    "TF_CPP_MIN_LOG_LEVEL": "3",  # C++ INFO/WARNING/ERROR lines, oneDNN and CPU-feature banners
    "ABSL_MIN_LOG_LEVEL": "3",
    "GRPC_VERBOSITY": "ERROR",
    "KERAS_BACKEND": "tensorflow",
}


def set_quiet_environment() -> None:
    """Set the log variables (unless the user set them) before TensorFlow first loads."""
    for key, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(key, value)


@contextmanager
def native_output_silenced() -> Iterator[None]:
    """Send whatever native code writes to fds 1 and 2 to /dev/null while the block runs."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)
