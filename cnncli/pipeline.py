"""A run over many images: batches of results written as they come, errors reported on stderr
as they come, progress, and a closing tally.

One image never stops the run (its error is a result), and Ctrl-C (or SIGTERM) ends it cleanly:
a batch is written and counted as one step that a signal waits for, so the tally counts exactly
what was written and nothing is ever half-written.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType

from cnncli.classify import ImageResult
from cnncli.progress import Meter

#: Ctrl-C, and the polite request to stop that service managers and `timeout` send.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class Tally:
    """How a run went: images classified, images failed, time, and whether it was cut short."""

    classified: int = 0
    failed: int = 0
    interrupted: bool = False
    started: float = field(default_factory=time.perf_counter)
    seconds: float = 0.0

    def add(self, results: Sequence[ImageResult]) -> None:
        failed = sum(r.error is not None for r in results)
        self.failed += failed
        self.classified += len(results) - failed

    def line(self) -> str:
        """The one-line summary: counts, elapsed time and throughput."""
        rate = (self.classified + self.failed) / self.seconds if self.seconds else 0.0
        return (
            f"{'interrupted: ' if self.interrupted else ''}{self.classified:,} classified, "
            f"{self.failed:,} failed in {self.seconds:.1f} s ({rate:.1f} images/s)"
        )


def run(
    batches: Generator[list[ImageResult], None, None],
    write: Callable[[list[ImageResult]], None],
    meter: Meter,
) -> Tally:
    """Drive `batches` to `write`, reporting each failure; end cleanly when interrupted."""
    tally = Tally()
    with stop_signals() as signals:
        try:
            for batch in batches:
                with signals.deferred():
                    write(batch)
                    tally.add(batch)
                for result in batch:
                    if result.error is not None:
                        meter.print(f"cnn: error: {result.image}: {result.error}", style="red")
                meter.advance(len(batch))
        except KeyboardInterrupt:
            tally.interrupted = True
        finally:
            batches.close()
    tally.seconds = time.perf_counter() - tally.started
    return tally


class StopSignals:
    """SIGINT and SIGTERM as KeyboardInterrupt, except inside `deferred()`, which they wait for.

    Python runs signal handlers in the main thread whichever thread the kernel interrupts, so
    this holds while decoder and engine threads run, where blocking the signals in the main
    thread alone would not.
    """

    def __init__(self) -> None:
        self.deferring = False
        self.pending = False

    def handle(self, _signum: int, _frame: FrameType | None) -> None:
        if self.deferring:
            self.pending = True
            return
        raise KeyboardInterrupt

    @contextmanager
    def deferred(self) -> Iterator[None]:
        self.deferring = True
        try:
            yield
        finally:
            self.deferring = False
        if self.pending:
            raise KeyboardInterrupt


@contextmanager
def stop_signals() -> Iterator[StopSignals]:
    """Route the stop signals through a `StopSignals` for the block (main thread only: Python
    lets no other thread set handlers, and there the defaults stay)."""
    signals = StopSignals()
    if threading.current_thread() is not threading.main_thread():
        yield signals
        return
    previous = {number: signal.signal(number, signals.handle) for number in STOP_SIGNALS}
    try:
        yield signals
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
