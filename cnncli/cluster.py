"""`cnn classify --ray`: the same records as a local run, from a Ray cluster's many machines.

A Ray Data pipeline, with nothing of its own for what an image becomes:

    listing (read tasks) -> decode + infer + write a part (an actor pool) -> driver

- Listing runs in read tasks, one per source, each yielding names as it walks (local paths
  through `inputs.Inputs`, object-store URIs through pyarrow's file systems) in blocks of a few
  KiB, the unit of work an actor takes (or a part's worth of them, with `--output DIR/`), so
  the driver never holds the list of a 10-million-image source. Images a resumed run already
  holds are dropped there, against an array of hashed keys in the object store.
- Workers never import TensorFlow: the driver takes the LiteRT flatbuffer its classifier runs
  (`engines.flatbuffer`: from the compiled-model cache, or converted for the run) and puts it
  in the object store once; each actor loads it with the LiteRT runtime in milliseconds.
- Each actor decodes its own batches with the project's decoder (`pipeline.decode_entry`: EXIF,
  modes, crop) in threads and runs the model on them (`pipeline.infer_batch`), so results are
  the `ImageResult`s a local run builds. An actor takes `LANES` CPUs and spreads each block it
  is given over as many lanes, each a thread with a single-threaded interpreter of its own: a
  node starts half the Python processes one actor per CPU would (each costs about 2
  CPU-seconds to start and import Ray Data on this machine), and single-threaded interpreters
  spend less CPU per image than one on two threads (see `LANES`).
- With `--output DIR/` the actor writes each block's results as a part file itself (`parts`),
  so a block of `--part-size` images is the unit of work, and results never cross the object
  store. Writer actors, a process of their own (about 2 CPU-seconds to start), made a
  2,000-photo run take 24.9 s against 21.0 (the local pipeline: 18.2; medians of 4).
- Decoding in Ray tasks instead (`decode="tasks"`) ships 150 KB of pixels per image through
  the object store and keeps half the CPUs from the model; on this 2-core machine it measured
  slower (17.5 against 21.0 images/s over 1,000 photos, 21 against 43 after the first part),
  so it is the option for clusters whose model actors sit on scarce accelerators, with
  decoding on the CPU nodes. An actor then takes a part's pixels at once (150 MB for 1,000
  images): such runs want a smaller `--part-size`.
- An image that cannot be decoded is an error record, never a failed task.
- Ray Data restarts a killed actor and retries its tasks (`max_restarts=-1`,
  `max_task_retries=-1` are its defaults for actor pools), and a task's output counts only once
  it finished, so every image reaches the output once; part files named by their content and
  written by rename (`parts`) make a repeated write harmless.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import queue
import signal
import sys
import tempfile
import warnings
from collections.abc import Generator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np

from cnncli import litert, parts, pipeline, registry, results_file
from cnncli.choices import Engine, Format, Resize
from cnncli.classify import ImageResult
from cnncli.engines import Classifier, flatbuffer, load_runner
from cnncli.env import Environment
from cnncli.errors import STOP_SIGNALS, CnnError, UsageError, first_line
from cnncli.inputs import Entry, Inputs, Skipped, is_image_name
from cnncli.labels import Prediction
from cnncli.networks import Network
from cnncli.progress import progress
from cnncli.quiet import native_output_silenced

#: Set before Ray is imported: a local instance then binds to 127.0.0.1 alone. Ray 2.60 turns a
#: `_node_ip_address` of 127.0.0.1 into the machine's address and listens on every interface
#: otherwise; this variable is its single-machine mode (no other node can join).
LOOPBACK = ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

#: Ray's usage statistics, off unless the environment says otherwise: a command-line tool does
#: not report on its user's runs unasked (and the machines it runs on are often offline). It
#: also spares each run Ray Data's usage bookkeeping, and an instance's first run the actor
#: that collects it (a process: about 2.5 CPU-seconds to start here).
USAGE_STATS = ("RAY_USAGE_STATS_ENABLED", "0")

#: The names of this machine's loopback interface in a cluster's address.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
#: This `cnncli` package's folder, which a cluster's workers are sent.
PACKAGE = Path(__file__).resolve().parent
#: Seconds to wait for a cluster's address to accept a connection before saying it does not.
CONNECT_TIMEOUT = 10.0

#: Bytes of names in the unit of work an actor takes without `--output DIR/` (see
#: `_data_context`): 4 KiB holds 30 to 100 names, a few model batches, a second or so of work,
#: whose cost as a Ray task (a few milliseconds) is small beside it, while the actors still
#: share out the last ones. With `--output DIR/` Ray Data bundles them into parts.
BLOCK_BYTES = 4096

#: CPUs each model actor takes, and its lanes: threads that decode and classify a model batch
#: at a time, each on a single-threaded interpreter of its own. Measured
#: here on 2,000 photos (mobilenet_v2), an actor's CPU time per image, its start included: 14 ms
#: in two lanes, 17 ms with one interpreter on two threads, 15 ms in two one-lane actors (as
#: fast as two lanes, 124.7 against 123.0 images/s on 6,000 photos, but twice the processes).
LANES = 2

#: Images per part file of `--output DIR/`: 10 million images make 10,000 files.
PART_SIZE = 1000

#: Memory a decoding task declares (`decode="tasks"`): a batch of pixels and the full-size
#: photo being decoded, generously.
DECODE_MEMORY = 256 * 2**20

#: Where decoding runs: in the model actors (the default, see the module) or in Ray tasks.
DecodeIn = Literal["actors", "tasks"]

INSTALL = 'pip install "cnncli[ray]"'


def available() -> bool:
    """Whether Ray is installed (without importing it: see `import_ray`)."""
    return importlib.util.find_spec("ray") is not None


def import_ray(loopback: bool, verbose: bool) -> Any:
    """Ray, imported in single-machine mode when the instance is on loopback (see `LOOPBACK`),
    with its native (C++) log lines off this process's stderr unless `verbose` (the driver's
    core worker writes warnings there that no Python logging setting reaches), and with its
    usage statistics off unless the user's environment turns them on (`USAGE_STATS`). All are
    environment variables Ray reads as it starts, hence set here, before any import of it."""
    if loopback:
        os.environ.setdefault(*LOOPBACK)
    if not verbose:
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    os.environ.setdefault(*USAGE_STATS)
    import ray

    return ray


@contextlib.contextmanager
def connected(
    address: str | None = None,
    num_cpus: int | None = None,
    temp_dir: Path | None = None,
    verbose: bool = False,
) -> Iterator[str]:
    """Ray for the block: the cluster at `address` (else `RAY_ADDRESS`), or a local instance
    started here (on loopback, with `num_cpus`) and stopped at the end. Workers import this
    `cnncli`: a remote cluster's are sent it (`py_modules`), so its nodes need its dependencies
    alone; on this machine they import it where this process did, through PYTHONPATH (for an
    instance started here, `_local_workers_import_this_cnncli`), which spares the packaging
    and seconds of start-up per run (benchmarks/README.md, "Cluster").
    Yields the cluster's address.

    Ray's lines stay off the terminal unless `verbose`: its start-up lines are native output
    (silenced), its warnings and Ray Data's progress are turned off, and what the driver
    `print`s (a line when a worker dies, whatever `log_to_driver` says) goes to /dev/null
    through `sys.stdout`, which cnn's own output never uses (`Environment`); with `verbose`
    it goes to stderr, never among the results."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    local = address in (None, "local")
    ray = import_ray(local or on_loopback(address), verbose)
    options: dict[str, Any] = {
        "log_to_driver": verbose,
        "logging_level": "INFO" if verbose else "ERROR",
    }
    if local:
        options.update(num_cpus=num_cpus, include_dashboard=False)
        options.update(_temp_dir=str(temp_dir) if temp_dir else None)
    elif on_loopback(address):  # workers on this file system: they import the driver's files
        search = os.pathsep.join((str(PACKAGE.parent), "${PYTHONPATH}"))  # (Ray expands ${X})
        options.update(runtime_env={"env_vars": {"PYTHONPATH": search}})
    else:
        options.update(runtime_env={"py_modules": [str(PACKAGE)]})
    with contextlib.ExitStack() as stack:
        sink = sys.stderr if verbose else stack.enter_context(open(os.devnull, "w"))
        stack.enter_context(contextlib.redirect_stdout(sink))
        stack.enter_context(warnings.catch_warnings())
        if not verbose:  # its advice on tuning (UserWarning), which a user of cnn cannot act on
            warnings.filterwarnings("ignore", module=r"ray(\.|$)")
        workers = _local_workers_import_this_cnncli() if local else contextlib.nullcontext()
        with _quiet(verbose), _own_signal_handlers(), workers:
            try:
                ray.init(address=address, **options)
            except ConnectionError as exc:  # something answers there, but not a Ray cluster
                raise CnnError(f"--ray {address}: {first_line(exc)}; {_connect_advice()}") from exc
        try:
            _quiet_data(verbose)
            yield ray.get_runtime_context().gcs_address
        finally:
            with _quiet(verbose):
                ray.shutdown()


def _connect_advice() -> str:
    """What to check when a driver cannot join the cluster at an address that answers: a Ray
    started by `ray start` requires its token unless told otherwise, and a driver sends it only
    with `RAY_AUTH_MODE=token`, without which Ray reports a failed connection, not the token."""
    advice = "check that a Ray cluster runs there"
    if os.environ.get("RAY_AUTH_MODE"):
        return advice
    return f"{advice}; if it uses token authentication, set RAY_AUTH_MODE=token"


def host_port(address: str) -> tuple[str, int]:
    """The host and port of a cluster address (`HOST:PORT`, `ray://HOST:PORT`, `[::1]:PORT`)."""
    host, _, port = address.split("://")[-1].rstrip("/").rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--ray {address}: expected HOST:PORT (or ray://HOST:PORT)")
    return host.strip("[]"), int(port)


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Refuse, within `timeout` seconds, an address where nothing accepts a connection: Ray
    itself would retry one for minutes before giving up."""
    import socket

    try:
        socket.create_connection(host_port(address), timeout=timeout).close()
    except OSError as exc:
        silent = isinstance(exc, TimeoutError)
        reason = f"no answer in {timeout:g} s" if silent else first_line(exc.strerror or exc)
        raise CnnError(
            f"--ray {address}: no Ray cluster answers there ({reason}); "
            "start one with `ray start --head`, or check the address"
        ) from exc


@contextlib.contextmanager
def _local_workers_import_this_cnncli() -> Iterator[None]:
    """While a local instance starts, put the folder this `cnncli` was imported from first on
    PYTHONPATH, which its processes inherit: its workers then import the driver's own code
    without a runtime environment (whose packaging and dedicated workers cost seconds)."""
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (str(PACKAGE.parent), saved)))
    try:
        yield
    finally:
        if saved is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = saved


def on_loopback(address: str) -> bool:
    """Whether `address` names an instance on this machine's loopback: Ray, unless in
    single-machine mode, connects to the machine's own address instead, where such an instance
    does not listen (the run would wait for it, retrying, for minutes)."""
    return address != "auto" and host_port(address)[0] in LOOPBACK_HOSTS


def _quiet(verbose: bool) -> contextlib.AbstractContextManager[None]:
    return contextlib.nullcontext() if verbose else native_output_silenced()


@contextlib.contextmanager
def _own_signal_handlers() -> Iterator[None]:
    """Keep cnn's handlers of the stop signals: `ray.init` sets one for SIGTERM that exits the
    process at once, where cnn stops the run cleanly (`pipeline.stop_signals`)."""
    saved = {number: signal.getsignal(number) for number in STOP_SIGNALS}
    try:
        yield
    finally:
        for number, handler in saved.items():
            signal.signal(number, handler)


def _quiet_data(verbose: bool) -> None:
    """Ray Data's progress bars and execution log lines, only with `verbose`."""
    import logging

    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = verbose
    context.print_on_execution_start = verbose
    logging.getLogger("ray.data").setLevel(logging.INFO if verbose else logging.ERROR)


@dataclass(frozen=True)
class Sources:
    """What to classify: local paths, directories and globs (on a file system every worker
    mounts at the same place), object-store URIs (`s3://bucket/prefix`, `gs://...`), and a
    file listing more of them, one per line."""

    arguments: tuple[str, ...]
    recursive: bool = False
    files_from: str | None = None

    @classmethod
    def of(cls, inputs: Inputs) -> Sources:
        """A run's inputs, which workers list: so not stdin, which they cannot read."""
        if inputs.files_from == "-":
            raise UsageError(
                "--files-from - (stdin) cannot be read by a cluster's workers: write the list "
                "to a file they can read and pass its name"
            )
        return cls(inputs.arguments, inputs.recursive, inputs.files_from)

    def shards(self) -> list[Inputs]:
        """One listing per argument, and one for the listed file: each is a read task."""
        listed = [Inputs((), self.recursive, self.files_from)] if self.files_from else []
        return [Inputs((a,), self.recursive) for a in self.arguments] + listed


@dataclass(frozen=True)
class Plan:
    """How a run is laid out on the cluster, and the model each actor runs: the driver's
    classifier's network (its record and labels: ImageNet's, or a bundle's classes), tag and
    precision, so workers write the records a local run writes."""

    network: Network
    tag: str
    precision: str
    top: int = 5
    resize: Resize = Resize.crop
    batch_size: int = 16
    part_size: int = PART_SIZE
    actors: int | None = None  # None: the cluster's CPUs / lanes (`laid_out`)
    lanes: int = LANES  # per actor: CPUs, and single-threaded interpreters
    decode: DecodeIn = "actors"
    block_bytes: int = BLOCK_BYTES
    #: The driver's folder, where workers look up relative names (when their node has it).
    cwd: str = field(default_factory=os.getcwd)

    @classmethod
    def of(cls, classifier: Classifier, job: pipeline.Job, part_size: int = PART_SIZE) -> Plan:
        """The plan of `job` with the model `classifier` runs on the driver."""
        network, tag, precision = classifier.network, classifier.tag, classifier.precision
        resize = job.resize or network.resize
        return cls(network, tag, precision, job.top, resize, job.batch_size, part_size)

    @property
    def arch(self) -> registry.Arch:
        return self.network.record

    def classifier(self, runner: litert.Runner) -> Classifier:
        """The driver's classifier rebuilt in a worker around the flatbuffer it was sent."""
        size = len(runner.flatbuffer)
        return Classifier(self.network, runner, litert.NAME, self.tag, self.precision, size)

    def enter(self) -> None:
        """In a worker: relative names mean what they mean on the driver."""
        with contextlib.suppress(OSError):
            os.chdir(self.cwd)


def entries(shard: Inputs) -> Iterator[Entry]:
    """A shard's entries as `cnn classify` finds them, except that a URI (given or listed),
    which names no local file, is listed through pyarrow."""
    for entry in shard.entries():
        if entry.error is not None and parts.is_uri(entry.image):
            yield from remote_entries(entry.image, shard.recursive)
        else:
            yield entry


def remote_entries(uri: str, recursive: bool) -> Iterator[Entry]:
    """The images under an object-store URI, in name order, a listing (one "folder") at a time:
    an object, or a prefix (descended with `recursive`), as `inputs` does for local folders."""
    from pyarrow import fs

    scheme = uri[: uri.index("://") + 3]
    try:
        filesystem, path = fs.FileSystem.from_uri(uri)
        info = filesystem.get_file_info(path)
    except (OSError, ValueError) as exc:
        yield Entry(uri, f"cannot reach it ({first_line(exc)})")
        return
    if info.type == fs.FileType.File:
        yield Entry(uri)
    elif info.type == fs.FileType.NotFound:
        yield Entry(uri, "no such object or prefix (check the URI)")
    else:
        yield from _walk(filesystem, scheme, path.rstrip("/"), recursive)


def _walk(filesystem: Any, scheme: str, top: str, recursive: bool) -> Iterator[Entry]:
    from pyarrow import fs

    folders = [top]
    found = False
    while folders:
        listing = filesystem.get_file_info(fs.FileSelector(folders.pop(), recursive=False))
        subfolders = []
        for info in sorted(listing, key=lambda i: i.path):
            if info.type == fs.FileType.Directory:
                subfolders.append(info.path)
            elif is_image_name(info.path):
                found = True
                yield Entry(scheme + info.path)
        folders.extend(reversed(subfolders) if recursive else [])
    if not found:
        yield Entry(scheme + top, "holds no image files")


def _list_blocks(shard: Inputs, plan: Plan, done: Any) -> Iterator[Any]:
    """A read task: the shard's entries as Arrow blocks of a model batch each, without the
    images in `done` (an object ref of `parts.done_keys`, or None)."""
    import pyarrow as pa
    import ray

    plan.enter()
    held = ray.get(done) if done is not None else None
    block: list[Entry] = []
    for entry in entries(shard):
        block.append(entry)
        if len(block) == plan.batch_size:
            yield entries_table(block, held, pa)
            block = []
    if block:
        yield entries_table(block, held, pa)


def entries_table(block: list[Entry], held: np.ndarray | None, pa: Any) -> Any:
    """A listed block, what an actor takes, without the images `held` (done keys) unless they
    failed. Names travel as bytes: Arrow strings are UTF-8, and a Linux name may be any bytes."""
    if held is not None and len(held):
        keys = np.array([parts.done_key(e.image) for e in block], dtype=held.dtype)
        hits = np.isin(keys, held)
        block = [e for e, hit in zip(block, hits, strict=True) if not hit or e.error]
    return pa.table(
        {
            "image": pa.array([os.fsencode(e.image) for e in block], pa.binary()),
            "error": pa.array([e.error for e in block], pa.string()),
        }
    )


def listing(sources: Sources, plan: Plan, done: Any = None) -> Any:
    """A Ray Data datasource over `sources` (see `_list_blocks`)."""
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    class Listing(Datasource):
        def estimate_inmemory_data_size(self) -> int | None:
            return None

        def get_read_tasks(
            self, parallelism: int, per_task_row_limit: Any = None, data_context: Any = None
        ) -> list[ReadTask]:
            metadata = BlockMetadata(num_rows=None, size_bytes=None, exec_stats=None)
            return [
                ReadTask(partial(_list_blocks, shard, plan, done), metadata)
                for shard in sources.shards()
            ]

    return Listing()


def decode(image: bytes, error: str | None, size: int, resize: Resize) -> np.ndarray | str:
    """One listed image decoded by the project's decoder, or why it cannot be (an object-store
    image is read into a temporary file first, so it is decoded exactly as a local one)."""
    name = os.fsdecode(image)
    if error is not None or not parts.is_uri(name):
        return pipeline.decode_entry(Entry(name, error), size, resize)
    try:
        data = _read_object(name)
    except OSError as exc:
        return f"cannot read it ({first_line(exc)})"
    with tempfile.NamedTemporaryFile(suffix=Path(name).suffix, dir=_scratch()) as file:
        file.write(data)
        file.flush()
        return pipeline.decode_entry(Entry(file.name), size, resize)


def _read_object(uri: str) -> bytes:
    from pyarrow import fs

    filesystem, path = fs.FileSystem.from_uri(uri)
    with filesystem.open_input_stream(path) as stream:
        return stream.read()


def _scratch() -> str | None:
    """Memory-backed temporary files where the system has them."""
    return "/dev/shm" if os.path.isdir("/dev/shm") else None


def errors(batch: dict[str, np.ndarray]) -> list[str | None]:
    """A numpy batch's errors. Ray Data hands a column that holds only nulls to numpy as NaN
    floats, so anything that is not a string means no error."""
    return [e if isinstance(e, str) else None for e in batch["error"]]


def decode_batch(batch: dict[str, np.ndarray], size: int, resize: Resize) -> dict[str, Any]:
    """A Ray task (`decode="tasks"`): pixels as uint8 (what the decoder gives, at a quarter of
    float32's bytes in the object store), zeros where an image failed, with its error."""
    found = zip(batch["image"], errors(batch), strict=True)
    values = [decode(image, error, size, resize) for image, error in found]
    blank = np.zeros((size, size, 3), np.uint8)
    pixels = [blank if isinstance(v, str) else v.astype(np.uint8) for v in values]
    failed = [v if isinstance(v, str) else None for v in values]
    return {"image": batch["image"], "error": np.array(failed, object), "pixels": np.stack(pixels)}


class Infer:
    """A model actor: loads the shipped flatbuffer once, then decodes (unless Ray tasks did) and
    classifies each block it is given, spread over its lanes, and returns its result rows, or,
    given a `folder`, writes them there as one part file and returns the part (`part_row`).

    Ray makes `plan.lanes` calls at once, in its threads, so a lane that finished its share of
    one block takes up the next block's; and a block alone (a run's last) still has every lane.
    """

    def __init__(
        self, model: Any, plan: Plan, folder: str | None = None, fmt: Format = Format.jsonl
    ) -> None:
        import ray

        plan.enter()
        data = ray.get(model) if isinstance(model, ray.ObjectRef) else model
        self.plan, self.folder, self.fmt = plan, folder, fmt
        self.idle: queue.SimpleQueue[Classifier] = queue.SimpleQueue()
        for _ in range(plan.lanes):
            self.idle.put(plan.classifier(load_runner(data, plan.arch, threads=1)))
        self.lanes = ThreadPoolExecutor(plan.lanes, thread_name_prefix="lane")

    def __call__(self, batch: dict[str, np.ndarray]) -> Any:
        rows, step = len(batch["image"]), self.plan.batch_size
        shares = [{k: v[i : i + step] for k, v in batch.items()} for i in range(0, rows, step)]
        results = [r for share in self.lanes.map(self.classify, shares) for r in share]
        if self.folder is None:
            return results_table(results)
        return part_row(parts.write(Path(self.folder), self.fmt, results))

    def classify(self, batch: dict[str, np.ndarray]) -> list[ImageResult]:
        """One model batch, in a lane: decoded here (or pixels decoded by Ray tasks), then
        classified on an idle interpreter (there is one per lane)."""
        found = list(zip(batch["image"], errors(batch), strict=True))
        if "pixels" in batch:
            pixels = batch["pixels"].astype(np.float32)
            values = [e or p for (_, e), p in zip(found, pixels, strict=True)]
        else:
            size, resize = self.plan.arch.input_size, self.plan.resize
            values = [decode(i, e, size, resize) for i, e in found]
        decoded = [(os.fsdecode(i), v) for (i, _), v in zip(found, values, strict=True)]
        classifier = self.idle.get()
        try:
            return pipeline.infer_batch(classifier, decoded, self.plan.top)
        finally:
            self.idle.put(classifier)


def results_table(results: Iterable[ImageResult]) -> Any:
    """Result rows as Arrow: image (bytes), model (its tag), predictions (list of structs, null
    on error), error (null on success)."""
    import pyarrow as pa

    prediction = parts.parquet_schema().field("predictions").type
    rows = list(results)
    predictions = [None if r.error else [p.as_dict() for p in r.predictions] for r in rows]
    return pa.table(
        {
            "image": pa.array([os.fsencode(r.image) for r in rows], pa.binary()),
            "model": pa.array([r.model for r in rows], pa.string()),
            "predictions": pa.array(predictions, prediction),
            "error": pa.array([r.error for r in rows], pa.string()),
        }
    )


def image_results(batch: Any) -> list[ImageResult]:
    """`ImageResult`s back from result rows (an Arrow table)."""
    return [
        ImageResult(
            os.fsdecode(row["image"]),
            row["model"],
            tuple(Prediction(**p) for p in row["predictions"] or ()),
            row["error"],
        )
        for row in batch.to_pylist()
    ]


def dataset(
    sources: Sources,
    plan: Plan,
    model: Any,
    done: Any = None,
    ordered: bool = False,
    into: parts.PartsFolder | None = None,
) -> Any:
    """The lazy Ray Data pipeline from `sources` to result rows, or to the rows of the parts
    written `into` a folder (see the module), in input order when `ordered`; `model` is the
    flatbuffer's object ref."""
    import ray

    with _data_context(ordered, plan.block_bytes):
        data = ray.data.read_datasource(
            listing(sources, plan, done),
            num_cpus=0,
            override_num_blocks=len(sources.shards()),  # or Ray Data splits each read's blocks
        )
        if plan.decode == "tasks":
            data = data.map_batches(
                decode_batch,
                fn_kwargs={"size": plan.arch.input_size, "resize": plan.resize},
                batch_size=plan.batch_size,
                batch_format="numpy",
                memory=DECODE_MEMORY,  # (resources that differ: Ray Data fuses them otherwise)
            )
        plan = laid_out(plan, *_cpus(ray))
        folder = {"folder": str(into.folder.resolve()), "fmt": into.fmt} if into else {}
        return data.map_batches(
            Infer,
            fn_constructor_kwargs={"model": model, "plan": plan, **folder},
            compute=ray.data.ActorPoolStrategy(
                size=plan.actors,
                max_concurrent_calls_per_actor=plan.lanes,
                enable_true_multi_threading=True,  # (else one call at a time runs the class)
            ),
            num_cpus=plan.lanes,
            batch_size=plan.part_size if into else plan.batch_size,
            batch_format="numpy",
        )


@contextlib.contextmanager
def _data_context(ordered: bool, block_bytes: int) -> Iterator[None]:
    """Ray Data options for the datasets built in the block (each takes a copy of the current
    context as it is built): input order kept when `ordered`, and blocks cut at `block_bytes`.

    The size of a block of names is the unit of work an actor takes, and Ray Data merges what a
    read task yields into blocks of 128 MiB by default: a listing of any size would become one
    task on one actor. Re-cutting the blocks by rows (`repartition`) needs a CPU for its tasks,
    which the actors hold: the run would wait forever. Result and pixel blocks cut as small
    are bundled again by the steps that take them (`batch_size`)."""
    from ray.data import DataContext

    context = DataContext.get_current()
    saved = context.execution_options.preserve_order, context.target_max_block_size
    context.execution_options.preserve_order = ordered
    context.target_max_block_size = block_bytes
    try:
        yield
    finally:
        context.execution_options.preserve_order, context.target_max_block_size = saved


def laid_out(plan: Plan, cpus: int, largest: int) -> Plan:
    """`plan` on a cluster of `cpus` CPUs whose largest node has `largest`: its model actors'
    lanes (no more than a node's CPUs, or than the actors' share: half of the CPUs when decoding
    tasks take the other half), and as many actors as that share holds, unless given."""
    share = max(1, cpus // 2 if plan.decode == "tasks" else cpus)
    lanes = max(1, min(plan.lanes, share, largest))
    return replace(plan, lanes=lanes, actors=plan.actors or max(1, share // lanes))


def _cpus(ray: Any) -> tuple[int, int]:
    """The cluster's CPUs, and those of its largest node (at least one of each)."""
    nodes = [node["Resources"].get("CPU", 0) for node in ray.nodes() if node["Alive"]]
    return max(1, int(sum(nodes))), max(1, int(max(nodes, default=1)))


def classify_ordered(
    sources: Sources, plan: Plan, model: bytes, done: np.ndarray | None = None
) -> Iterator[list[ImageResult]]:
    """Results a batch at a time in input order, on the driver (connected to Ray), without the
    images `done` holds: for one `--output FILE` or stdout, written as a local run writes it."""
    import ray

    held = ray.put(done) if done is not None and len(done) else None
    data = dataset(sources, plan, ray.put(model), held, ordered=True)
    for batch in data.iter_batches(batch_size=None, batch_format="pyarrow"):
        yield image_results(batch)


def write_parts(
    sources: Sources, plan: Plan, model: bytes, folder: parts.PartsFolder
) -> Iterator[parts.Part]:
    """Classify into part files of `folder` (opened by `parts.opened`: with `--resume`, its held
    images are skipped), each written by the model actor that classified its images; yields
    each part as the actor's task that wrote it returns (a part, or two when Ray Data's bundle
    held a few images more), for progress and error lines on the driver (connected to Ray)."""
    import ray

    done = ray.put(folder.done) if len(folder.done) else None
    data = dataset(sources, plan, ray.put(model), done, into=folder)
    # Each part as soon as it is written: with `iter_rows` (which prefetches) the driver heard
    # of parts only as the run ended (measured: written at 13.8 s, reported at 22.3 s of 22.3).
    for batch in data.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=0):
        for row in batch.to_pylist():
            failed = zip(map(os.fsdecode, row["failed"]), row["reasons"], strict=True)
            yield parts.Part(row["name"], row["images"], tuple(failed))


def part_row(part: parts.Part) -> Any:
    """A part as written, as one Arrow row: its name, image count and failed images."""
    import pyarrow as pa

    failed = [os.fsencode(image) for image, _ in part.errors]
    reasons = [reason for _, reason in part.errors]
    return pa.table(
        {
            "name": [part.name],
            "images": [part.images],
            "failed": pa.array([failed], pa.list_(pa.binary())),
            "reasons": pa.array([reasons], pa.list_(pa.string())),
        }
    )


@dataclass(frozen=True)
class Cluster:
    """Where `cnn classify --ray` runs, and how: the cluster's address (None: `RAY_ADDRESS`,
    else a local instance), Ray's own lines shown or not, whether `--output` is a folder of
    part files and how many images each holds, and for a local instance its CPUs and temp
    dir."""

    address: str | None = None
    verbose: bool = False
    into_parts: bool = False
    part_size: int = PART_SIZE
    num_cpus: int | None = None
    temp_dir: Path | None = None

    @classmethod
    def parse(
        cls, address: str, engine: Engine, verbose: bool, into_parts: bool, part_size: int
    ) -> Cluster:
        """`--ray [ADDRESS]` as the user gave it; refused when Ray is not installed, with an
        engine other than LiteRT (what every worker runs), when ADDRESS is a path (the images,
        taken as the address when `--ray` comes before them), or when nothing answers at the
        address (`RAY_ADDRESS` without one): before any model is loaded or converted."""
        if not available():
            raise UsageError(f"--ray needs Ray, which is not installed: {INSTALL}")
        if engine not in (Engine.auto, Engine.litert):
            raise UsageError(
                f"--ray runs the model on LiteRT in every worker: drop --engine {engine.value}"
            )
        if address and os.path.exists(address):
            raise UsageError(
                f"--ray took '{address}' as the cluster's address, but it is a file or folder: "
                "put --ray after the images, or write --ray=ADDRESS"
            )
        given = address or os.environ.get("RAY_ADDRESS")
        if given and given not in ("local", "auto"):
            check_reachable(given)
        return cls(address or None, verbose, into_parts, part_size)

    def connected(self) -> contextlib.AbstractContextManager[str]:
        return connected(self.address, self.num_cpus, self.temp_dir, self.verbose)

    def plan(self, job: pipeline.Job, classifier: Classifier) -> Plan:
        return Plan.of(classifier, job, self.part_size)

    def run(self, env: Environment, job: pipeline.Job) -> pipeline.Tally:
        """A whole `cnn classify --ray` run: into part files with `--output DIR/`, else
        written by this process as a local run writes it (`pipeline.run_job`). The model is
        opened on LiteRT (whatever made its flatbuffer: the cache, a conversion for this run,
        int8 quantization), the flatbuffer every worker is sent."""
        job = replace(job, engine=Engine.litert)
        sources = Sources.of(job.inputs)
        if not self.into_parts:
            return pipeline.run_job(env, job, partial(self.batches, sources))
        assert job.output is not None
        job, opening = pipeline.prepared(env, job)
        with parts.opened(job.output, job.fmt, job.resume, opening.tag) as folder:
            classifier = opening.open(job.engine)
            with progress(env, f"classifying with {classifier.arch.name} on Ray") as meter:
                meter.count_total(lambda: job.inputs.count(folder))
                found = self._parts(sources, self.plan(job, classifier), classifier, folder)
                tally = pipeline.drive(found, lambda part: (part.images, part.errors), meter)
        pipeline.say_closing(env, tally, len(folder.done), job.output)
        return tally

    def _parts(
        self, sources: Sources, plan: Plan, classifier: Classifier, folder: parts.PartsFolder
    ) -> Generator[parts.Part, None, None]:
        with self.connected():
            yield from write_parts(sources, plan, flatbuffer(classifier), folder)

    def batches(
        self,
        sources: Sources,
        env: Environment,
        job: pipeline.Job,
        classifier: Classifier,
        output: results_file.Output,
        skipped: Skipped,
    ) -> Generator[list[ImageResult], None, None]:
        """`pipeline.Batches` on the cluster: without the images `output` holds (counted as
        already there) or FILE itself."""
        output.already = set(output.contents.held)
        itself = [str(output.path)] if output.path is not None else []
        done = parts.done_keys([*output.already, *itself])
        with self.connected():
            model = flatbuffer(classifier)
            yield from classify_ordered(sources, self.plan(job, classifier), model, done)
