"""The environment a command runs in, as one injected object.

The CLI builds one `Environment` from the real process (streams, terminal, colour, cache dir) and
tests build their own, so nothing reaches for `sys.stdout` or `os.environ` behind the CLI's back.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from rich.console import Console

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
        """The environment of the running process: its streams, terminals and variables."""
        environ = dict(os.environ)
        return cls(
            stdout=sys.stdout,
            stderr=sys.stderr,
            stdin=sys.stdin,
            stdout_isatty=sys.stdout.isatty(),
            stderr_isatty=sys.stderr.isatty(),
            colors="NO_COLOR" not in environ,
            cache_dir=_default_cache_dir(environ),
        )

    def console(self) -> Console:
        """A rich console on stdout, for results."""
        return self._console(self.stdout, self.stdout_isatty)

    def err_console(self) -> Console:
        """A rich console on stderr, for progress, warnings and error lines."""
        return self._console(self.stderr, self.stderr_isatty)

    def say(self, line: str, style: str | None = None) -> None:
        """One line on stderr (an error, a warning, a closing summary), printed verbatim."""
        self.err_console().print(line, style=style, markup=False)

    def _console(self, stream: TextIO, isatty: bool) -> Console:
        """Styled only on a terminal with NO_COLOR unset; off a terminal, wide enough that no
        table column is cut (there is no width to measure). Lines of text are never wrapped by
        rich, so an error stays one line however long it is."""
        return Console(
            file=stream,
            force_terminal=isatty,
            color_system="auto" if self.colors else None,
            highlight=False,
            width=None if isatty else PIPE_WIDTH,
            soft_wrap=True,
        )
