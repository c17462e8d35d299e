"""Keeping native libraries' own chatter off the user's terminal.

TensorFlow, its converter and the LiteRT runtime print banners and INFO lines from C++ straight
to file descriptors 1 and 2, past Python's `sys.stderr`, and TensorFlow 2.21 prints its absl and
CPU-feature lines at import whatever the log variables say on some CPUs. So the variables are
only a first line of defence: `native_output_silenced` points the raw descriptors at /dev/null
for the duration of each such call. cnn's own output is unaffected because the CLI's streams
write to duplicates of the descriptors taken at start-up (`Environment.from_process`).

Under `--debug` nothing is silenced, so a native library's message before it crashes is seen.
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

#: Whether native output is let through (`--debug`); process-wide, as the descriptors are.
_passthrough = False


def show_native_output(show: bool) -> None:
    """Let native libraries' output through (`--debug`), or silence it again."""
    global _passthrough
    _passthrough = show


def set_quiet_environment() -> None:
    """Set the log variables (unless the user set them) before TensorFlow first loads."""
    for key, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(key, value)


@contextmanager
def native_output_silenced() -> Iterator[None]:
    """Send whatever native code writes to fds 1 and 2 to /dev/null while the block runs.

    Python's own `sys.stdout` and `sys.stderr` write to those descriptors too, so what a library
    prints through them is flushed inside the block and silenced with the rest.
    """
    if _passthrough:
        yield
        return
    _flush_python_streams()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        _flush_python_streams()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def _flush_python_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:  # None when the descriptor was closed at start-up
            stream.flush()
