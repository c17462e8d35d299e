"""The environment a command runs in, as one injected object.

The CLI builds one `Environment` from the real process (streams, terminal, colour, cache dir) and
tests build their own, so nothing reaches for `sys.stdout` or `os.environ` behind the CLI's back.

The process's streams are duplicates of file descriptors 1 and 2 taken at start-up: native
libraries write to the raw descriptors, which `quiet` points at /dev/null around their calls, and
cnn's own results, spinners and errors must still get through meanwhile.
"""

from __future__ import annotations

import contextlib
import errno
import io
import locale
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from rich.console import Console

from cnncli.errors import CnnError, message

#: Width of tables written to a file or pipe, where there is no terminal to measure: wide
#: enough that no column of any command is cut.
PIPE_WIDTH = 160


def _default_cache_dir(environ: dict[str, str]) -> Path:
    """`CNN_CACHE_DIR`, else `$XDG_CACHE_HOME/cnncli`, else `~/.cache/cnncli`."""
    if environ.get("CNN_CACHE_DIR"):
        return Path(environ["CNN_CACHE_DIR"])
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cnncli"


@dataclass
class Environment:
    """Streams, terminal facts and settings that commands read instead of globals."""

    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    stdin: TextIO = field(default_factory=lambda: sys.stdin)
    stdout_isatty: bool = False
    stderr_isatty: bool = False
    colors: bool = True
    cache_dir: Path = field(default_factory=lambda: _default_cache_dir(dict(os.environ)))
    debug: bool = False

    @classmethod
    def from_process(cls) -> Environment:
        """The environment of the running process: its streams, terminals and variables.

        A standard descriptor closed at start-up (`cnn ... >&-`) is first given /dev/null, so
        that no file opened later lands on it and receives what native code prints. A closed
        stdout then fails at the first write (one error line); a closed stderr just loses its
        lines, and the results still come."""
        closed = _reopen_closed_standard_fds()
        environ = dict(os.environ)
        return cls(
            stdout=ClosedStream("standard output") if 1 in closed else _duplicate(1, sys.stdout),
            stderr=_duplicate(2, sys.stderr),
            stdin=sys.stdin or io.StringIO(),  # None when fd 0 was closed: nothing to read
            stdout_isatty=os.isatty(1),  # False for /dev/null too
            stderr_isatty=os.isatty(2),
            colors="NO_COLOR" not in environ,
            cache_dir=_default_cache_dir(environ),
        )

    def drop_output(self) -> None:
        """Send whatever stdout and stderr still hold to /dev/null: their reader is gone (a
        broken pipe), and flushing them at exit would only raise the same error again."""
        devnull = os.open(os.devnull, os.O_WRONLY)
        for stream in (self.stdout, self.stderr):
            with contextlib.suppress(OSError, ValueError):  # a stream with no descriptor
                os.dup2(devnull, stream.fileno())
        os.close(devnull)

    def console(self) -> Console:
        """A rich console on stdout, for results."""
        return self._console(self.stdout, self.stdout_isatty)

    def err_console(self) -> Console:
        """A rich console on stderr, for progress, warnings and error lines."""
        return self._console(self.stderr, self.stderr_isatty)

    def error(self, text: str) -> None:
        """`cnn: error: TEXT` on stderr."""
        self.say(message("error", text), style="red")

    def warn(self, text: str) -> None:
        """`cnn: warning: TEXT` on stderr."""
        self.say(message("warning", text), style="yellow")

    def note(self, text: str) -> None:
        """`cnn: note: TEXT` on stderr."""
        self.say(message("note", text))

    def say(self, line: str, style: str | None = None) -> None:
        """One line on stderr (an error, a warning, a closing summary), printed verbatim."""
        self.err_console().print(line, style=style, markup=False)

    def _console(self, stream: TextIO, isatty: bool) -> Console:
        """Styled only on a terminal with NO_COLOR unset; off a terminal, wide enough that no
        table column is cut (there is no width to measure). Lines of text are never wrapped by
        rich, so an error stays one line however long it is."""
        return _Console(
            file=stream,
            force_terminal=isatty,
            color_system="auto" if self.colors else None,
            highlight=False,
            width=None if isatty else PIPE_WIDTH,
            soft_wrap=True,
        )


class _Console(Console):
    """A rich console that lets a broken pipe propagate: rich's own answer is to exit with
    status 1 after pointing fd 1 (not necessarily this console's stream) at /dev/null."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))


class ClosedStream(io.TextIOBase):
    """Stands in for a standard stream that was closed when cnn started: writing to it is the
    user's error, reported as one line, not a traceback from deep inside a library."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.label = name

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        raise CnnError(
            f"cannot write to {self.label}: it was closed (or read-only) when cnn started; "
            "redirect it to a file or /dev/null instead"
        )


def _reopen_closed_standard_fds() -> frozenset[int]:
    """Put /dev/null on each of fds 0, 1, 2 that cannot be used; return those numbers.

    Closed is the usual case (`>&-`); a wrapper script can also leave its own file, read-only, on
    a closed descriptor before it runs Python (pyenv's shims do)."""
    unusable = frozenset(fd for fd in (0, 1, 2) if not _usable(fd))
    for fd in sorted(unusable):
        devnull = os.open(os.devnull, os.O_RDWR)  # the lowest free number: often `fd` itself
        if devnull != fd:
            os.dup2(devnull, fd)
            os.close(devnull)
    return unusable


def _usable(fd: int) -> bool:
    """Whether `fd` is open, and for 1 and 2 open for writing (a write of nothing checks it)."""
    try:
        if fd == 0:
            os.fstat(fd)
        else:
            os.write(fd, b"")
    except OSError:
        return False
    return True


def _duplicate(fd: int, like: TextIO | None) -> TextIO:
    """A text stream on a duplicate of `fd`, encoded and buffered as Python's own stream on it
    (`like`, None when the descriptor was closed at start-up)."""
    encoding = getattr(like, "encoding", None) or locale.getpreferredencoding(False)
    errors = getattr(like, "errors", None) or "backslashreplace"
    buffering = 1 if fd == 2 or os.isatty(fd) else -1  # 1: line by line
    return open(os.dup(fd), "w", buffering=buffering, encoding=encoding, errors=errors)
