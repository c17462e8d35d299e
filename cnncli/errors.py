"""The errors a user can cause, each carrying the exit code the CLI answers with.

Everything that is the user's to fix (a bad name, a missing file, an unreachable download) is a
`CnnError`: the CLI prints its message as one line and exits with its code, never a traceback.
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import NoReturn


class CnnError(Exception):
    """A failure the user can act on; the message names the input and the fix."""

    exit_code = 1


class UsageError(CnnError):
    """The command line itself is wrong (unknown architecture, value out of range)."""

    exit_code = 2


class InputError(CnnError):
    """One input (an image file) cannot be used; the others go on."""

    def __init__(self, image: str, reason: str) -> None:
        super().__init__(f"{image}: {reason}")
        self.image = image
        self.reason = reason


def first_line(exc: BaseException) -> str:
    """An exception's first line of text (library messages can run to pages), else its type."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


#: Ctrl-C, and the polite request to stop that service managers and `timeout` send.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A stop signal (SIGINT, SIGTERM) raised as an exception wherever the run is, so that
    everything unwinds and cleans up (temporary files, a results file's last batch); the
    process then exits 128 + the signal's number, as a shell reports a command it killed."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @classmethod
    def of(cls, exc: KeyboardInterrupt) -> Interrupted:
        """`exc` as an `Interrupted`: a plain KeyboardInterrupt (Python's own handler) is SIGINT."""
        return exc if isinstance(exc, Interrupted) else cls(signal.SIGINT)

    @classmethod
    def handler(cls, signum: int, _frame: FrameType | None) -> NoReturn:
        """A signal handler raising the signal as `Interrupted`."""
        raise cls(signum)
