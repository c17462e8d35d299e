"""`cnn classify --ray` on a real local Ray instance: the records of a local run (files,
`file://` URIs, and `s3://` URIs of a local S3 server), part files that hold every image
exactly once (even when the model actors' processes are killed mid-run, and after Ctrl-C and
`--resume`), Parquet parts, workers that never load TensorFlow, Ray's lines kept off the
terminal, and an instance that listens on 127.0.0.1.

One Ray instance serves the module: a helper process starts it as `cnn classify --ray` without
an address does (`cluster.connected`: 127.0.0.1 only, 2 CPUs, its own temp dir) and holds it
until the module's teardown closes its stdin. The model is a seeded MobileNet-0.25, converted
once into a module cache by the local run the others are compared with. Every run and wait is
bounded by `RUN_TIMEOUT`. About 2 minutes on a busy 2-core machine (115 s at load 5-6).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cnncli import litert
from tests.conftest import COLOURS, ROOT, colour_photo, run_cli, seeded_model
from tests.test_stream import ARCH, write_jpegs

if importlib.util.find_spec("ray") is None:  # not importorskip: Ray must not be imported before
    pytest.skip(  # `cluster.import_ray` sets how a local instance binds
        'Ray is not installed (pip install ".[ray]")', allow_module_level=True
    )
pytestmark = pytest.mark.skipif(not litert.available(), reason="ai-edge-litert is not installed")

TOP = 3
#: Seconds any one run or wait may take on a busy 2-core machine before the test fails.
RUN_TIMEOUT = 240
#: The title Ray gives the processes of the model actors' pool.
ACTOR_TITLE = b"ray::MapWorker(MapBatches(Infer))"
#: The title of the actor Ray Data starts to collect usage statistics, when they are on.
USAGE_TITLE = b"ray::_UsageCollectionActor"
#: Credentials and region for the local S3 server, which checks none.
S3_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
#: The helper that starts the module's instance and holds it until its stdin closes.
HOLD = """
import os, sys
from pathlib import Path
from cnncli import cluster
with cluster.connected(num_cpus=2, temp_dir=Path(sys.argv[1])) as address:
    os.write(1, address.encode() + b"\\n")  # (cluster sends Python's stdout to /dev/null)
    sys.stdin.read()
"""


@dataclass(frozen=True)
class Instance:
    address: str
    temp: Path
    pid: int


@pytest.fixture(scope="module")
def s3() -> Iterator[str | None]:
    """A local S3 server (moto, on 127.0.0.1), which the module's instance and its workers
    reach through AWS's environment variables (pyarrow honours AWS_ENDPOINT_URL), as a
    cluster's nodes reach a bucket through theirs; None where moto is not installed."""
    if importlib.util.find_spec("moto") is None:
        yield None
        return
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        with pytest.MonkeyPatch.context() as environment:
            for name, value in S3_ENVIRONMENT.items():
                environment.setenv(name, value)
            environment.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
            yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def instance(s3):
    """The module's Ray instance, started after the S3 server so its workers reach it; a short
    temp dir (Ray's socket paths must stay under the 107 bytes a Unix socket name may have). Ray
    gives an instance it starts token authentication (the token in ~/.ray/auth_token, created
    if missing), and a driver given an address uses the token only when told to:
    `RAY_AUTH_MODE=token`, as a user of such a cluster sets it. Once the instance is up, a
    driver's attempts to connect are bounded (by default they take minutes)."""
    with pytest.MonkeyPatch.context() as environment:
        environment.setenv("RAY_AUTH_MODE", "token")
        temp = Path(tempfile.mkdtemp(prefix="cnnray-"))
        yield from held(temp, environment)


def held(temp: Path, environment: pytest.MonkeyPatch) -> Iterator[Instance]:
    """The instance the helper started in `temp`, until it is stopped."""
    with (temp / "helper.log").open("wb") as log:
        helper = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(temp)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            start_new_session=True,  # its own process group, which teardown may end
        )
    try:
        assert helper.stdout is not None
        ready, _, _ = select.select([helper.stdout], [], [], RUN_TIMEOUT)
        address = helper.stdout.readline().decode().strip() if ready else ""
        assert address, f"no Ray instance: {(temp / 'helper.log').read_text()[-2000:]}"
        environment.setenv("RAY_gcs_server_port_wait_time_s", "3")
        yield Instance(address, temp, helper.pid)
    finally:
        stop(helper)
        shutil.rmtree(temp, ignore_errors=True)


def stop(helper: subprocess.Popen) -> None:
    """Let the helper stop its instance (`ray.shutdown`); end its process group if it hangs."""
    assert helper.stdin is not None
    helper.stdin.close()
    try:
        helper.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(helper.pid, signal.SIGKILL)
        helper.wait(timeout=30)


@dataclass(frozen=True)
class Model:
    """Seeded weights and the module's compiled-model cache."""

    weights: Path
    cache: Path

    def args(self, *args: object) -> list[str]:
        return ["classify", *map(str, args), "-a", ARCH, "-w", str(self.weights), "-k", str(TOP)]

    def run(self, *args: object):
        """`cnn classify ARGS` in this process (the in-process runner of the `cli` fixture)."""
        return run_cli(*self.args(*args), tmp=self.cache)

    def process(self, *args: object) -> subprocess.Popen:
        """`cnn classify ARGS` as a process of its own, which a test can signal."""
        return subprocess.Popen(
            [sys.executable, "-m", "cnncli", *self.args(*args)],
            cwd=ROOT,
            env={**os.environ, "CNN_CACHE_DIR": str(self.cache)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Model:
    folder = tmp_path_factory.mktemp("cluster-model")
    seeded_model(ARCH, 13).save_weights(folder / "mobilenet.weights.h5")
    return Model(folder / "mobilenet.weights.h5", folder / "cache")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """48 JPEGs, one file that is no image and one truncated JPEG."""
    folder = tmp_path_factory.mktemp("cluster-photos")
    jpegs = write_jpegs(folder, 48)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    (folder / "truncated.jpg").write_bytes(jpegs[0].read_bytes()[:300])
    return folder


@pytest.fixture(scope="module")
def local(model, photos, tmp_path_factory) -> list[dict]:
    """The local run the cluster's records must equal (it converts the model into the cache)."""
    out = tmp_path_factory.mktemp("cluster-local") / "local.jsonl"
    assert model.run(photos, "-e", "litert", "-f", "jsonl", "-o", out).exit_code == 1
    return [json.loads(line) for line in out.read_text().splitlines()]


def assert_same_records(got: list[dict], want: list[dict]) -> None:
    """Same images in the same order, same model tag, same errors, same labels, scores within
    1e-5."""
    assert [r["image"] for r in got] == [r["image"] for r in want]
    for a, b in zip(got, want, strict=True):
        assert a["model"] == b["model"]
        assert a.get("error") == b.get("error")
        assert [p["label"] for p in a.get("predictions", [])] == [
            p["label"] for p in b.get("predictions", [])
        ]
        assert [p["score"] for p in a.get("predictions", [])] == pytest.approx(
            [p["score"] for p in b.get("predictions", [])], abs=1e-5
        )


def cnn_lines(stderr: str) -> list[str]:
    """stderr's lines that are not cnn's own (which start `cnn: ` or are the closing line)."""
    return [
        line
        for line in stderr.splitlines()
        if not line.startswith("cnn: ") and " classified, " not in line
    ]


def test_a_local_instance_listens_on_loopback_only(instance):
    addresses = listening(descendants(instance.pid))
    assert addresses, "no listening socket of the instance was found"
    assert addresses <= {"127.0.0.1", "::ffff:127.0.0.1", "::1"}


def test_an_address_without_a_cluster_is_one_line_before_any_model_loads(tmp_path):
    """Ray retries an address where nothing listens for minutes: cnn asks first, within
    seconds, and says so in one line before loading or converting anything; a malformed
    address and an engine the workers do not run are usage errors."""
    with socket.socket() as probe:  # a port nothing listens on: bound, then closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    photo = colour_photo(tmp_path / "red.jpg", 0, seed=0)
    for given, env in ((f"127.0.0.1:{port}", {}), (None, {"RAY_ADDRESS": f"[::1]:{port}"})):
        args = ("classify", photo, "-w", "none", "--ray", *([given] if given else []))
        with pytest.MonkeyPatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            run = run_cli(*args)
        assert run.exit_code == 1 and run.stdout == ""
        lines = run.stderr.splitlines()
        assert not [text for text in lines if "converting" in text]
        (line,) = [text for text in lines if text.startswith("cnn: error:")]
        assert line.startswith(f"cnn: error: --ray {given or env['RAY_ADDRESS']}: no Ray cluster")
        assert "`ray start --head`" in line
    for args, says in (
        (("--ray", "nonsense"), "expected HOST:PORT"),
        (("--ray", "-e", "openvino"), "drop --engine openvino"),
    ):
        run = run_cli("classify", photo, "-w", "none", *args)
        assert run.exit_code == 2 and says in run.stderr.splitlines()[-1]


@pytest.mark.heavy
def test_a_cluster_that_wants_a_token_is_told_of_in_one_line(instance, tmp_path, monkeypatch):
    """A driver sends the cluster's token only with RAY_AUTH_MODE=token, and Ray then reports a
    failed connection: the line says what to set. (Heavy: Ray gives up after about 40 s.)"""
    monkeypatch.delenv("RAY_AUTH_MODE")
    photo = colour_photo(tmp_path / "red.jpg", 0, seed=0)
    run = run_cli("classify", photo, "-w", "none", "--ray", instance.address)
    assert run.exit_code == 1 and run.stdout == ""
    (line,) = [text for text in run.stderr.splitlines() if text.startswith("cnn: error:")]
    assert line.startswith(f"cnn: error: --ray {instance.address}: ")
    assert line.endswith("if it uses token authentication, set RAY_AUTH_MODE=token")


@pytest.mark.parametrize(
    ("cpus", "largest", "decode", "lanes", "actors"),
    [
        (2, 2, "actors", 2, 1),  # this machine: one process, two interpreters
        (32, 16, "actors", 2, 16),
        (3, 3, "actors", 2, 1),
        (4, 1, "actors", 1, 4),  # nodes of one CPU: an actor needs its CPUs on one node
        (1, 1, "actors", 1, 1),
        (2, 2, "tasks", 1, 1),  # decoding tasks keep half of the CPUs
        (8, 8, "tasks", 2, 2),
    ],
)
def test_model_actors_fit_the_nodes_and_leave_decoding_tasks_their_half(
    cpus, largest, decode, lanes, actors
):
    from cnncli.cluster import Plan, laid_out

    plan = laid_out(Plan(None, "tag", "fp32", decode=decode), cpus, largest)  # type: ignore[arg-type]
    assert (plan.lanes, plan.actors) == (lanes, actors)
    assert laid_out(Plan(None, "t", "fp32", actors=3), cpus, largest).actors == 3  # type: ignore[arg-type]


def descendants(pid: int) -> set[int]:
    """`pid` and every process under it."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(proc.name))
    found, todo = set(), [pid]
    while todo:
        found.add(todo[-1])
        todo.extend(children.get(todo.pop(), []))
    return found


def listening(pids: set[int]) -> set[str]:
    """The local addresses of the TCP sockets that `pids` listen on (/proc/net/tcp, tcp6)."""
    inodes = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
    found = set()
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                raw = bytes.fromhex(fields[1].split(":")[0])
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                found.add(socket.inet_ntop(family, words))
    return found


def test_records_equal_a_local_run_for_files_and_uris(instance, model, photos, local, tmp_path):
    """The folder as paths and as a `file://` URI (pyarrow's file system, as s3:// and gs://
    are read): the local run's records twice, the second time named by URI; on stderr, cnn's
    error lines and closing line alone."""
    out = tmp_path / "ray.jsonl"
    run = model.run(photos, f"file://{photos}", "--ray", instance.address, "-f", "jsonl", "-o", out)
    assert run.exit_code == 1, run.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert_same_records(records[: len(local)], local)
    renamed = [{**r, "image": r["image"].removeprefix("file://")} for r in records[len(local) :]]
    assert all(r["image"].startswith("file://") for r in records[len(local) :])
    assert_same_records(renamed, local)
    assert cnn_lines(run.stderr) == []
    failed = [line for line in run.stderr.splitlines() if line.startswith("cnn: error:")]
    assert len(failed) == 4  # broken.jpg and truncated.jpg, by path and by URI
    assert run.stderr.splitlines()[-1].startswith(f"{2 * len(local) - 4} classified, 4 failed")
    assert not actor_processes(instance.temp, USAGE_TITLE), "Ray's usage statistics are on"


def test_records_equal_a_local_run_for_an_s3_bucket(instance, s3, model, photos, local, tmp_path):
    """The photos uploaded to a bucket of the local S3 server and classified by their s3:// URI
    (listed and read by pyarrow in the workers): the local run's records, named by URI."""
    if s3 is None:
        pytest.skip('moto is not installed (pip install -e ".[test]"): no local S3 server')
    import boto3

    bucket = boto3.client("s3", endpoint_url=s3)
    bucket.create_bucket(Bucket="cnn")
    for photo in photos.iterdir():
        bucket.put_object(Bucket="cnn", Key=f"library/{photo.name}", Body=photo.read_bytes())
    out = tmp_path / "ray.jsonl"
    run = model.run("s3://cnn/library", "--ray", instance.address, "-f", "jsonl", "-o", out)
    assert run.exit_code == 1, run.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(r["image"].startswith("s3://cnn/library/") for r in records)
    named = [{**r, "image": r["image"].replace("s3://cnn/library", str(photos))} for r in records]
    assert_same_records(named, local)
    assert run.stderr.splitlines()[-1].startswith(f"{len(local) - 2} classified, 2 failed")


def test_a_trained_model_and_an_int8_model_give_a_local_runs_records(
    instance, model, trained, tmp_path
):
    """`--model BUNDLE` (its own classes, without WordNet ids, and its tag) and `--precision
    int8` (the quantized flatbuffer the driver's cache holds, shipped as it is) on the cluster:
    the records a local run of each writes."""
    photos = [
        colour_photo(tmp_path / f"{name}.png", channel, seed)
        for seed, (name, channel) in enumerate(COLOURS.items())
    ]
    int8 = ("-a", ARCH, "-w", model.weights, "--precision", "int8")
    tags = []
    for number, chosen in enumerate((("--model", trained), int8)):
        want, got = tmp_path / f"local-{number}.jsonl", tmp_path / f"ray-{number}.jsonl"
        common = ("classify", *photos, *chosen, "-k", TOP, "-f", "jsonl")
        assert run_cli(*common, "-o", want, tmp=model.cache).exit_code == 0
        run = run_cli(*common, "--ray", instance.address, "-o", got, tmp=model.cache)
        assert run.exit_code == 0 and cnn_lines(run.stderr) == [], run.stderr
        records = [json.loads(line) for line in got.read_text().splitlines()]
        assert_same_records(records, [json.loads(line) for line in want.read_text().splitlines()])
        tags.append({r["model"] for r in records})
        if number == 0:  # the bundle's classes, right about its colours
            assert [r["predictions"][0]["label"] for r in records] == list(COLOURS)
            assert {p["wnid"] for r in records for p in r["predictions"]} == {None}
    (bundle_tag,), (int8_tag,) = tags
    assert bundle_tag.startswith("colours@sha256:") and "+int8:" in int8_tag


def parquet_rows(folder: Path) -> list[dict]:
    import pyarrow.parquet as pq

    parts = sorted(folder.glob("part-*.parquet"))
    rows = [row for part in parts for row in pq.read_table(part).to_pylist()]
    return [{k: v for k, v in row.items() if v is not None} for row in rows]


def test_parquet_parts_resume_to_hold_every_image_once(instance, model, photos, local, tmp_path):
    """A first run over part of the photos, then a resumed run over all of them: the images
    held are skipped, the failed one (its error record dropped first) is classified again."""
    parquet = ("--ray", instance.address, "-f", "parquet", "-o", f"{tmp_path}/parts/")
    first = model.run(photos / "img_000*.jpg", photos / "broken.jpg", *parquet, "--part-size", "4")
    assert first.exit_code == 1
    assert first.stderr.splitlines()[-1].startswith("10 classified, 1 failed")
    again = model.run(photos, *parquet, "--part-size", "8", "--resume")
    assert again.exit_code == 1 and cnn_lines(again.stderr) == []
    closing = again.stderr.splitlines()[-1]
    assert closing.startswith("38 classified, 2 failed") and closing.endswith(
        f"; 10 already in {tmp_path}/parts"
    )
    rows = parquet_rows(tmp_path / "parts")
    by_image = sorted(rows, key=lambda r: r["image"])
    assert_same_records(by_image, sorted(local, key=lambda r: r["image"]))
    assert not list((tmp_path / "parts").glob(".part-*"))


class Feed:
    """A named pipe that a run lists its images from (`--files-from`), fed by a thread a third
    at a time: the first at once, the next at each `release`. Until the last third goes, the run
    cannot end, so whatever a test does meanwhile happens in the middle of the run."""

    def __init__(self, folder: Path, images: list[str]) -> None:
        self.path = folder / "paths.fifo"
        os.mkfifo(self.path)
        third = len(images) // 3
        self.thirds = [images[:third], images[third : 2 * third], images[2 * third :]]
        self.released = threading.Semaphore(0)
        self.thread = threading.Thread(target=self._feed, daemon=True)
        self.thread.start()

    def _feed(self) -> None:
        """Write the paths; a reader interrupted before the rest goes breaks the pipe."""
        with contextlib.suppress(BrokenPipeError), open(self.path, "w") as pipe:
            for number, third in enumerate(self.thirds):
                if number and not self.released.acquire(timeout=RUN_TIMEOUT):
                    return
                pipe.write("".join(f"{image}\n" for image in third))
                pipe.flush()

    def release(self) -> None:
        self.released.release()

    def close(self) -> None:
        """End the feeding thread: release what is left (or break the pipe)."""
        for _ in self.thirds:
            self.released.release()
        self.thread.join(RUN_TIMEOUT)


def actor_processes(temp: Path, title: bytes = ACTOR_TITLE) -> list[int]:
    """The processes of the actors titled `title` (the model actors' by default) on the
    instance whose temp dir is `temp`: Ray titles them by their class; only the raylet of this
    instance (named by its socket there) and the workers it started are looked at, never
    another user's Ray."""
    children: dict[int, list[int]] = {}
    commands: dict[int, bytes] = {}
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            commands[int(proc.name)] = (proc / "cmdline").read_bytes()
            children.setdefault(parent, []).append(int(proc.name))
    raylets = [
        pid
        for pid, command in commands.items()
        if b"raylet" in command and os.fsencode(temp) in command
    ]
    return [
        pid
        for raylet in raylets
        for pid in children.get(raylet, [])
        if commands.get(pid, b"").startswith(title)
    ]


def waited(condition: Callable[[], object], what: str) -> object:
    """`condition()` once it is true, polled; the test fails after `RUN_TIMEOUT` seconds."""
    deadline = time.monotonic() + RUN_TIMEOUT
    while not (value := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"waited {RUN_TIMEOUT} s for {what}")
        time.sleep(0.2)
    return value


def part_images(folder: Path) -> Counter[str]:
    """How many times the finished JSON Lines parts of `folder` hold each image."""
    return Counter(
        json.loads(line)["image"]
        for part in folder.glob("part-*.jsonl")
        for line in part.read_text().splitlines()
    )


def loads_tensorflow(pid: int) -> bool:
    """Whether a process has mapped any of TensorFlow's files (the LiteRT runtime has its own)."""
    return f"{os.sep}tensorflow{os.sep}" in Path(f"/proc/{pid}/maps").read_text()


def test_killed_actors_and_ctrl_c_leave_every_image_exactly_once(instance, model, local, tmp_path):
    """A run fed a third of 240 images at a time (`Feed`): once a part is written, both model
    actors are killed (SIGKILL) and Ray starts new ones; once parts hold images of the second
    third (not all of them: up to a block of names and a part's worth of results wait in the
    pipeline for rows that only the last third would bring), the driver gets SIGINT. It exits
    130 with cnn's lines alone, its actors go, its parts hold those images once each; `--resume`
    then completes them, each once."""
    library = tmp_path / "library"
    images = sorted(str(p) for p in write_jpegs(library, 240))
    feed = Feed(tmp_path, images)
    out = tmp_path / "parts"
    driver = model.process(
        "--files-from",
        feed.path,
        "--ray",
        instance.address,
        "-f",
        "jsonl",
        "-o",
        f"{out}/",
        "-b",
        "2",
        "--part-size",
        "4",
    )
    try:
        waited(lambda: part_images(out), "a first part")
        killed = waited(lambda: actor_processes(instance.temp), "the model actors")
        assert not any(loads_tensorflow(pid) for pid in killed)
        for pid in killed:
            os.kill(pid, signal.SIGKILL)
        waited(lambda: set(actor_processes(instance.temp)) - set(killed), "new actors")
        feed.release()
        waited(lambda: len(part_images(out)) > 80, "images of the second third in parts")
        driver.send_signal(signal.SIGINT)
        stdout, stderr = driver.communicate(timeout=RUN_TIMEOUT)
    finally:
        driver.kill()
        feed.close()
    assert driver.returncode == 130, stderr
    assert stdout == "" and cnn_lines(stderr) == []
    assert stderr.splitlines()[-2].startswith("interrupted: ")
    assert stderr.splitlines()[-1] == "cnn: error: interrupted"
    waited(lambda: not actor_processes(instance.temp), "the job's actors to go")
    interrupted = part_images(out)
    assert 80 < len(interrupted) < 240 and set(interrupted.values()) == {1}
    resumed = model.run(library, "--ray", instance.address, "-f", "jsonl", "-o", out, "--resume")
    assert resumed.exit_code == 0, resumed.stderr
    assert part_images(out) == Counter(images)
