"""Photos through a model: decoded ahead in a thread pool while the model runs, batch by batch
(`decoded`, the one decoding loop: `scored` and `stream` run a classifier over it, training runs
its own networks over it), and a whole `cnn classify` run over a library: batches of results
written as they come, errors reported on stderr as they come, progress, and a closing tally.

One image never stops the run (its error is a result), and Ctrl-C (or SIGTERM) ends it cleanly:
a batch is written and counted as one step that a signal waits for, so the tally counts exactly
what was written and nothing is ever half-written.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path
from types import FrameType
from typing import TypeVar

import numpy as np

from cnncli import classify, results_file
from cnncli.choices import Engine, Format, Precision, Resize
from cnncli.classify import ImageResult
from cnncli.engines import Classifier, Opening
from cnncli.env import Environment
from cnncli.errors import STOP_SIGNALS, InputError, Interrupted, message
from cnncli.images import load_array, pixels
from cnncli.inputs import Entry, Inputs, Skipped, SkippedFolders
from cnncli.labels import ScoresError
from cnncli.networks import Network, resize_for
from cnncli.output import emit
from cnncli.progress import Meter, progress

#: Batches decoded ahead of the one the model runs: enough to keep it busy, few enough that
#: memory stays a few batches of pixels.
LOOKAHEAD = 2

T = TypeVar("T")


#: One image in a stream: its name, and its array (decoded pixels, or scores), or the reason
#: there is none (a file that cannot be read).
Item = tuple[str, np.ndarray | str]


def classify_entries(
    classifier: Classifier,
    entries: Iterable[Entry],
    top: int,
    resize: Resize,
    batch_size: int,
) -> list[ImageResult]:
    """Results for `entries` in order; images go through the model `batch_size` at a time."""
    batches = stream(classifier, entries, top, resize, batch_size)
    return [result for batch in batches for result in batch]


def stream(
    classifier: Classifier,
    entries: Iterable[Entry],
    top: int,
    resize: Resize,
    batch_size: int,
) -> Iterator[list[ImageResult]]:
    """Each image's `top` classes (`infer_batch`), a batch at a time, in input order; an image
    that cannot be read or scored is a result with its error."""
    for batch in decoded(entries, classifier.arch.input_size, resize, batch_size):
        yield infer_batch(classifier, batch, top)


def scored(
    classifier: Classifier, entries: Iterable[Entry], resize: Resize, batch_size: int
) -> Iterator[list[Item]]:
    """Each image's scores over the classifier's classes, a batch at a time, in input order."""
    for batch in decoded(entries, classifier.arch.input_size, resize, batch_size):
        yield score_batch(classifier, batch)


def decoded(
    entries: Iterable[Entry], size: int, resize: Resize, batch_size: int
) -> Iterator[list[Item]]:
    """Each entry's pixels as a model of input `size` takes them (`images.load_array`, the one
    path to a model's pixels), a batch at a time, in input order, memory bounded whatever the
    count: the one decoding loop of every command that runs a model over many files (`scored`,
    training's features).

    A thread pool decodes the next `LOOKAHEAD` batches while the caller uses the current one
    (Pillow and the engines release the GIL), so decoding hides behind inference; `entries` is
    read only as far as that look-ahead.
    """
    pool = ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="cnn-decode")
    pending: deque[list[tuple[str, Future[np.ndarray | str]]]] = deque()
    try:
        for chunk in _chunks(entries, batch_size):
            pending.append([(e.image, pool.submit(decode_entry, e, size, resize)) for e in chunk])
            if len(pending) > LOOKAHEAD:
                yield [(image, future.result()) for image, future in pending.popleft()]
        while pending:
            yield [(image, future.result()) for image, future in pending.popleft()]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _chunks(entries: Iterable[Entry], size: int) -> Iterator[list[Entry]]:
    iterator = iter(entries)
    while chunk := list(islice(iterator, size)):
        yield chunk


def decode_entry(entry: Entry, size: int, resize: Resize) -> np.ndarray | str:
    """The model's input for one entry, or why there is none. Whatever a file holds, its
    failure is its own: an unexpected exception from a decoder is reported, not raised.
    The one decoding step of every run, here or in a cluster's workers (`cluster.Infer`)."""
    if entry.error is not None:
        return entry.error
    try:
        if entry.photo is not None:
            return pixels(entry.photo, size, resize)
        return load_array(entry.image, size, resize)
    except InputError as exc:
        return exc.reason
    except Exception as exc:
        return f"cannot decode image ({type(exc).__name__}: {exc})"


def infer_batch(classifier: Classifier, batch: list[Item], top: int) -> list[ImageResult]:
    """One decoded batch (`decoded`'s) through the model, each image's `top` classes decoded by
    the classifier's labels and tagged with its model, errors kept in place: what `stream` and
    a cluster's model actors (`cluster.Infer`) run, so both write the same records."""
    scored = score_batch(classifier, batch)
    return [_result(classifier, image, value, top) for image, value in scored]


def score_batch(classifier: Classifier, batch: list[Item]) -> list[Item]:
    """One decoded batch's scores over the classifier's classes (one forward pass), errors kept
    in place."""
    pixels = [value for _, value in batch if not isinstance(value, str)]
    scores = iter(classifier.scores(np.stack(pixels)) if pixels else [])
    return [(image, value if isinstance(value, str) else next(scores)) for image, value in batch]


def _result(classifier: Classifier, image: str, scores: np.ndarray | str, top: int) -> ImageResult:
    """An image's top classes, or its error: one it could not be read with, or scores that
    rank nothing (NaN from bad weights)."""
    if isinstance(scores, str):
        return ImageResult(image, classifier.tag, error=scores)
    try:
        return ImageResult(image, classifier.tag, tuple(classifier.labels.decode(scores, top)))
    except ScoresError as exc:
        return ImageResult(image, classifier.tag, error=str(exc))


#: What one step of a run wrote: its number of images, and the failed ones with their errors.
Written = tuple[int, Sequence[tuple[str, str]]]


def written(results: Sequence[ImageResult]) -> Written:
    """What a batch of results counts for in a run's tally and error lines."""
    return len(results), [(r.image, r.error) for r in results if r.error is not None]


@dataclass
class Tally:
    """How a run went: images classified, images failed, time, and what cut it short if anything
    did."""

    classified: int = 0
    failed: int = 0
    interrupted: Interrupted | None = None
    started: float = field(default_factory=time.perf_counter)
    seconds: float = 0.0

    def add(self, done: Written) -> None:
        images, failures = done
        self.failed += len(failures)
        self.classified += images - len(failures)

    def line(self) -> str:
        """The one-line summary: counts, elapsed time and throughput."""
        rate = (self.classified + self.failed) / self.seconds if self.seconds else 0.0
        return (
            f"{'interrupted: ' if self.interrupted else ''}{self.classified:,} classified, "
            f"{self.failed:,} failed in {self.seconds:.1f} s ({rate:.1f} images/s)"
        )


@dataclass(frozen=True)
class Job:
    """What `cnn classify` is asked to do: which images, with which model on which engine,
    written how (`resize` None: the model's own policy)."""

    inputs: Inputs
    network: Network
    engine: Engine = Engine.auto
    top: int = 5
    resize: Resize | None = None
    batch_size: int = 16
    fmt: Format = Format.table
    output: Path | None = None
    resume: bool = False
    verbose: bool = False
    precision: Precision = Precision.fp32
    calibrate: str | None = None


#: How a run turns its inputs into batches of results in input order, given the classifier, the
#: output (whose images are not classified again) and where discovery reports what it passes
#: over: `local_batches` on this machine, or a cluster's (`cluster.Cluster.batches`).
Batches = Callable[
    [Environment, Job, Classifier, results_file.Output, Skipped],
    Generator[list[ImageResult], None, None],
]


def local_batches(
    env: Environment,
    job: Job,
    classifier: Classifier,
    output: results_file.Output,
    skipped: Skipped,
) -> Generator[list[ImageResult], None, None]:
    """This machine's: discovery (minus what `output` holds or is) decoded ahead by `stream`."""
    entries = output.fresh(job.inputs.entries(env.stdin, skipped), skipped)
    return stream(classifier, entries, job.top, job.resize, job.batch_size)


def prepared(env: Environment, job: Job) -> tuple[Job, Opening]:
    """`job` with its resize policy settled (`networks.resize_for`), and its model's `Opening`,
    whose tag the output is checked against before the model loads."""
    job = replace(job, resize=resize_for(job.network, job.resize, env))
    return job, Opening(job.network, env, job.precision, job.calibrate)


def run_job(env: Environment, job: Job, batches: Batches = local_batches) -> Tally:
    """Every image of `job` through its model, in `batches`, the model opened once the output
    file is checked, locked and read for `--resume` (which refuses a file of another model's
    results), so a file that must not be written fails before any model loads. jsonl and csv
    are written a batch at a time, table and json as one document at the end, once the progress
    display is gone; a note of the subfolders left out (without --recursive) and the closing
    summary go to stderr."""
    job, opening = prepared(env, job)
    folders = SkippedFolders()
    arguments = job.inputs.arguments
    with results_file.opened(job.output, job.fmt, job.resume, opening.tag, arguments) as output:
        classifier = opening.open(job.engine)
        with output.writing(env, job.fmt, job.resume) as out:
            tally, results = _classify(out, job, classifier, output, folders, batches)
            if job.fmt not in results_file.STREAMED and not tally.interrupted:
                emit(
                    out,
                    job.fmt,
                    classify.document(classifier, results),
                    lambda: classify.render(results),
                    lambda: classify.rows(results),
                )
    if note := folders.note():
        env.note(note)
    if env.stderr_isatty or job.fmt in results_file.STREAMED or job.output is not None:
        say_closing(env, tally, len(output.already), job.output)
    return tally


def say_closing(env: Environment, tally: Tally, already: int, output: object) -> None:
    """The closing line on stderr: the tally, and the images `output` already held."""
    held = f"; {already:,} already in {output}" if already else ""
    env.say(tally.line() + held)


def _classify(
    env: Environment,
    job: Job,
    classifier: Classifier,
    output: results_file.Output,
    folders: SkippedFolders,
    batches: Batches,
) -> tuple[Tally, list[ImageResult]]:
    """The run behind a progress display: streamed formats written as batches come, the
    results of the others returned to be printed after the display has gone; the subfolders
    discovery leaves out are counted in `folders`."""
    results: list[ImageResult] = []
    with progress(env, f"classifying with {classifier.arch.name}") as meter:

        def skipped(path: str, why: str) -> None:
            folders.count(path, why)
            if job.verbose:
                meter.print(message("note", f"skipped {path}: {why}"))

        meter.count_total(lambda: job.inputs.count(output))
        found = batches(env, job, classifier, output, skipped)
        streamed = job.fmt in results_file.STREAMED
        write = results_file.Writer(env.stdout, job.fmt).write if streamed else results.extend

        def step(batch: list[ImageResult]) -> Written:
            write(batch)
            return written(batch)

        return drive(found, step, meter), results


def drive(steps: Generator[T, None, None], write: Callable[[T], Written], meter: Meter) -> Tally:
    """Drive `steps` through `write` (a batch written to the output, or a part a cluster wrote,
    counted), reporting each failure; end cleanly when interrupted, closing `steps` (a generator
    stops its work: the decoders here, the cluster's job there)."""
    tally = Tally()
    with stop_signals() as signals:
        try:
            for step in steps:
                with signals.deferred():
                    done = write(step)
                    tally.add(done)
                for image, error in done[1]:
                    meter.print(message("error", f"{image}: {error}"), style="red")
                meter.advance(done[0])
        except KeyboardInterrupt as exc:
            tally.interrupted = Interrupted.of(exc)
        finally:
            steps.close()
    tally.seconds = time.perf_counter() - tally.started
    return tally


class StopSignals:
    """SIGINT and SIGTERM as `Interrupted`, except inside `deferred()`, which they wait for.

    Python runs signal handlers in the main thread whichever thread the kernel interrupts, so
    this holds while decoder and engine threads run, where blocking the signals in the main
    thread alone would not.
    """

    def __init__(self) -> None:
        self.deferring = False
        self.pending: int | None = None

    def handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.deferring:
            self.pending = signum
            return
        raise Interrupted(signum)

    @contextmanager
    def deferred(self) -> Iterator[None]:
        self.deferring = True
        try:
            yield
        finally:
            self.deferring = False
        if self.pending is not None:
            raise Interrupted(self.pending)


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
