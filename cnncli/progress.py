"""Progress on stderr while weights load or many images run; silent when stderr is not a tty."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cnncli.env import Environment

Advance = Callable[[int], None]


@contextmanager
def status(env: Environment, message: str) -> Iterator[None]:
    """A spinner with `message` for a step of unknown length (building a model, loading weights)."""
    if not env.stderr_isatty:
        yield
        return
    with env.err_console().status(message):
        yield


@contextmanager
def progress(env: Environment, description: str, total: int) -> Iterator[Advance]:
    """A bar over `total` items; yields `advance(n)`. Silent off a terminal or for one item."""
    if not env.stderr_isatty or total < 2:
        with nullcontext():
            yield lambda _n: None
        return
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=env.err_console(),
        transient=True,
    )
    with bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)
