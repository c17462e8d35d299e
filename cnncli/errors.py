"""The errors a user can cause, each carrying the exit code the CLI answers with.

Everything that is the user's to fix (a bad name, a missing file, an unreachable download) is a
`CnnError`: the CLI prints its message as one line and exits with its code, never a traceback.
"""


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
