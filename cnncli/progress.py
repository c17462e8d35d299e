"""Progress on stderr while weights load or many images run; off a terminal, only the lines that
say what a long step is doing."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Column
from rich.text import Text

from cnncli.env import Environment


@contextmanager
def status(env: Environment, message: str, announce: bool = False) -> Iterator[None]:
    """A spinner with `message` for a step of unknown length (building a model, loading weights).

    Off a terminal there is no spinner; a step long and rare enough that a log should say what
    the process is doing (`announce`: a conversion, a benchmark's step) is one line instead."""
    if not env.stderr_isatty:
        if announce:
            env.note(message)
        yield
        return
    with env.err_console().status(message):
        yield


class RateColumn(ProgressColumn):
    """Items per second, as rich estimates it over the last seconds."""

    def __init__(self) -> None:
        super().__init__(table_column=Column(no_wrap=True))

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.1f} images/s" if speed else "- images/s", style="progress.data.speed")


class Meter:
    """Images done against a total that may become known later, drawn as a bar on a terminal.

    Lines printed through the meter appear above the bar instead of tearing it.
    """

    def __init__(
        self, console: Console, bar: Progress | None = None, task: TaskID | None = None
    ) -> None:
        self.console = console
        self.bar = bar
        self.task = task

    def advance(self, n: int) -> None:
        if self.bar is not None and self.task is not None:
            self.bar.advance(self.task, n)

    def count_total(self, count: Callable[[], int | None]) -> None:
        """Learn the total from `count` in a background thread (only when there is a bar)."""
        if self.bar is None or self.task is None:
            return
        bar, task = self.bar, self.task
        threading.Thread(target=lambda: bar.update(task, total=count()), daemon=True).start()

    def print(self, line: str, style: str | None = None) -> None:
        self.console.print(line, style=style, markup=False, highlight=False)


@contextmanager
def progress(env: Environment, description: str, total: int | None = None) -> Iterator[Meter]:
    """A meter of images: description, bar, done/total, images/s and ETA on stderr when it is a
    terminal; off a terminal, a meter that only prints lines. `total`, when known already."""
    console = env.err_console()
    if not env.stderr_isatty:
        yield Meter(console)
        return
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(bar_width=None),
        MofNCompleteColumn(),
        RateColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    with bar:
        yield Meter(console, bar, bar.add_task(description, total=total))


#: Told after each training batch: images so far in the epoch, running loss and accuracy.
EpochUpdate = Callable[[int, float, float], None]


@contextmanager
def epoch_bar(env: Environment, description: str, total: int) -> Iterator[EpochUpdate]:
    """A training epoch on a terminal: description, bar, images done/total, the running loss
    and accuracy, images/s and ETA; gone when the epoch ends (its line replaces it). Off a
    terminal, nothing: the epoch's line is all a log needs."""
    if not env.stderr_isatty:
        yield lambda done, loss, accuracy: None
        return
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(bar_width=None),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}  accuracy {task.fields[accuracy]:.1%}"),
        RateColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=env.err_console(),
        transient=True,
    )
    with bar:
        task = bar.add_task(description, total=total, loss=float("nan"), accuracy=float("nan"))
        yield lambda done, loss, accuracy: bar.update(
            task, completed=done, loss=loss, accuracy=accuracy
        )
