"""Writing files so that a reader never sees half of one: a temporary file beside the target,
named after its writer's process, flushed to disk, then renamed into place.

The writer's pid in the temporary name lets a clean-up (`cnn cache clear`) remove what a killed
writer left without touching a live one's.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def temporary(path: Path, suffix: str = ".tmp") -> Path:
    """A new empty file beside `path`, named `.NAME.PID.RANDOM<suffix>` after its writer (a
    suffix of its own where the writer checks it: Keras saves only to `.keras`)."""
    fd, name = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=suffix
    )
    os.close(fd)
    return Path(name)


def abandoned(tmp: Path) -> bool:
    """Whether the process named in a temporary file's name is gone (a name without a pid is
    not one of ours, and a pid that exists may be a live writer: both are left alone)."""
    parts = tmp.name.rsplit(".", 3)
    if len(parts) != 4 or not parts[1].isdigit():
        return False
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, another user's
    return False


def atomic_write(path: Path, write: Callable[[Path], None], suffix: str = ".tmp") -> None:
    """`write` to a temporary file beside `path`, then move it into place (`commit`)."""
    commit(temporary(path, suffix), path, write)


def commit(tmp: Path, path: Path, write: Callable[[Path], None]) -> None:
    """`write(tmp)`, flush it to disk, then rename it to `path`; `tmp` never outlives a failure."""
    try:
        write(tmp)
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        tmp.chmod(0o644)  # mkstemp makes it private; what we write is as readable as any file
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
