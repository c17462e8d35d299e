"""How cnn fails: the errors a user can cause, the exit status of every outcome, and the one
format of every line cnn writes about itself (`cnn: error: ...`, `cnn: warning: ...`).

Everything that is the user's to fix (a bad name, a missing file, an unreachable download) is a
`CnnError`: the CLI prints its message as one line and exits with its status, never a traceback.
Anything else is a bug in cnn, and exits with a status of its own so scripts can tell the two apart.
"""

from __future__ import annotations

import difflib
import signal
from collections.abc import Iterable, Mapping
from enum import IntEnum
from types import FrameType
from typing import Literal, NoReturn

#: How cnn names itself at the start of its own lines on stderr.
PROGRAM = "cnn"

#: What a line on stderr is about: a failure, something the user should know, or a hint.
Kind = Literal["error", "warning", "note"]


def message(kind: Kind, text: str) -> str:
    """One line of cnn's own on stderr: `cnn: error: photo.jpg: ...`."""
    return f"{PROGRAM}: {kind}: {text}"


class ExitStatus(IntEnum):
    """What the exit status of `cnn` says (as httpie's and the shells' conventions have it)."""

    SUCCESS = 0
    #: The command ran, but something failed: an input that could not be read, a download.
    FAILURE = 1
    #: The command line is wrong: an unknown architecture, a value out of range.
    USAGE = 2
    #: A bug in cnn, not the user's doing (sysexits' EX_SOFTWARE).
    INTERNAL = 70
    #: Stopped by Ctrl-C (128 + SIGINT).
    INTERRUPTED = 128 + signal.SIGINT
    #: The reader of stdout went away (`cnn ... | head -1`), as a shell reports it (128 + SIGPIPE).
    BROKEN_PIPE = 128 + signal.SIGPIPE
    #: Stopped by SIGTERM (128 + SIGTERM), as service managers and `timeout` stop a process.
    TERMINATED = 128 + signal.SIGTERM


class CnnError(Exception):
    """A failure the user can act on; the message names the input and the fix."""

    exit_code = ExitStatus.FAILURE


class UsageError(CnnError):
    """The command line itself is wrong (unknown architecture, value out of range)."""

    exit_code = ExitStatus.USAGE


def did_you_mean(
    query: str, choices: Iterable[str] | Mapping[str, str], cutoff: float = 0.6
) -> str:
    """`; did you mean a or b?` for the choices closest to a misspelt `query`, else nothing.

    `choices` may map the spellings matched against to the names shown (a registry matches
    folded keys such as `resnet50v2` and shows `resnet50_v2`)."""
    shown = choices if isinstance(choices, Mapping) else {choice: choice for choice in choices}
    close = difflib.get_close_matches(query, list(shown), n=3, cutoff=cutoff)
    names = sorted({shown[key] for key in close})
    return f"; did you mean {' or '.join(names)}?" if names else ""


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
