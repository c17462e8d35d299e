"""Part files and the command line of `cnn classify --ray`, without starting Ray: parts hold the
bytes a results file holds, `--resume` drops their error records, a folder is locked and never
overwritten, and every option that only a cluster's run takes is refused elsewhere in one line.
(The runs on a real Ray instance are tests/test_cluster.py.)
"""

from __future__ import annotations

import importlib.util
import io
import sys

import pytest

from cnncli import parts, results_file
from cnncli.choices import Format
from cnncli.classify import ImageResult
from cnncli.cli.options import optional_values
from cnncli.errors import CnnError
from cnncli.labels import Prediction
from tests.conftest import SAMPLES

CAT = str(SAMPLES / "cat.jpg")
#: The tag of the model whose results the parts hold (`networks.tag`).
TAG = "mobilenet@imagenet"
needs_ray = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason='Ray is not installed (pip install ".[ray]")'
)
needs_pyarrow = pytest.mark.skipif(
    importlib.util.find_spec("pyarrow") is None, reason="pyarrow (from Ray's extra) is absent"
)


def results() -> list[ImageResult]:
    """Two classified images (one with a name that is not UTF-8) and a failed one."""
    tabby = Prediction(rank=1, index=281, wnid="n02123045", label="tabby", score=0.75)
    cup = Prediction(rank=1, index=968, wnid="n07930864", label="cup", score=0.5)
    return [
        ImageResult("a/cat.jpg", TAG, (tabby, tabby)),
        ImageResult("a/caf\udce9.jpg", TAG, (cup,)),
        ImageResult("a/broken.jpg", TAG, error="cannot identify image file"),
    ]


@pytest.mark.parametrize("fmt", [Format.jsonl, Format.csv])
def test_a_text_part_holds_the_bytes_a_results_file_holds(tmp_path, fmt):
    part = parts.write(tmp_path, fmt, results())
    stream = io.TextIOWrapper(io.BytesIO(), results_file.ENCODING, results_file.ERRORS)
    results_file.Writer(stream, fmt).write(results())
    stream.flush()
    assert (tmp_path / part.name).read_bytes() == stream.buffer.getvalue()
    assert part.images == 3 and part.errors == (("a/broken.jpg", "cannot identify image file"),)
    assert not list(tmp_path.glob(".*"))  # written under a temporary name, renamed


def test_a_part_is_named_by_its_images_so_a_repeated_write_is_the_same_file(tmp_path):
    first = parts.write(tmp_path, Format.jsonl, results())
    again = parts.write(tmp_path, Format.jsonl, results())
    other = parts.write(tmp_path, Format.jsonl, results()[:2])
    assert first.name == again.name != other.name
    assert sorted(p.name for p in tmp_path.glob("part-*")) == sorted({first.name, other.name})


@pytest.mark.parametrize(
    "fmt", [Format.jsonl, Format.csv, pytest.param(Format.parquet, marks=needs_pyarrow)]
)
def test_resume_holds_the_classified_images_and_drops_the_error_records(tmp_path, fmt):
    kept = parts.write(tmp_path, fmt, results()[:2])
    mixed = parts.write(tmp_path, fmt, results()[1:])
    failed = parts.write(tmp_path, fmt, results()[2:])
    with parts.opened(tmp_path, fmt, True, TAG) as folder:
        assert CAT not in folder and "a/broken.jpg" not in folder
        assert "a/cat.jpg" in folder and "./a/../a/caf\udce9.jpg" in folder
        assert len(folder.done) == 2
    assert not (tmp_path / failed.name).exists()  # it held an error record alone
    assert _content(tmp_path / kept.name) == _written(tmp_path, fmt, results()[:2])
    assert _content(tmp_path / mixed.name) == _written(tmp_path, fmt, results()[1:2])
    assert not list(tmp_path.glob(".part-*"))


def _written(tmp_path, fmt: Format, results: list[ImageResult]) -> object:
    """What a part of `results` holds, written in a folder of its own."""
    folder = tmp_path / f"expected-{len(results)}"
    folder.mkdir(exist_ok=True)
    return _content(folder / parts.write(folder, fmt, results).name)


def _content(part) -> object:
    """A text part's bytes; a Parquet part's rows."""
    if part.suffix != ".parquet":
        return part.read_bytes()
    import pyarrow.parquet as pq

    return pq.read_table(part).to_pylist()


def test_a_folder_with_parts_needs_resume_and_is_left_as_it_is(tmp_path):
    part = parts.write(tmp_path, Format.jsonl, results())
    before = (tmp_path / part.name).read_bytes()
    with (
        pytest.raises(CnnError, match="--resume"),
        parts.opened(tmp_path, Format.jsonl, False, TAG),
    ):
        pass
    assert (tmp_path / part.name).read_bytes() == before


@pytest.mark.parametrize("fmt", [Format.jsonl, pytest.param(Format.parquet, marks=needs_pyarrow)])
def test_resume_refuses_a_folder_holding_another_models_parts_and_leaves_it(tmp_path, fmt):
    part = parts.write(tmp_path, fmt, results())
    before = (tmp_path / part.name).read_bytes()
    with (
        pytest.raises(CnnError, match=f"holds results of {TAG}, not of resnet50@imagenet"),
        parts.opened(tmp_path, fmt, True, "resnet50@imagenet"),
    ):
        pass
    assert (tmp_path / part.name).read_bytes() == before  # its error record is still there


def test_a_folder_is_locked_for_the_run_and_dead_writers_temporary_files_go(tmp_path):
    leftover = tmp_path / ".part-0123.jsonl.999999.abc.tmp"
    leftover.write_text("torn")
    with parts.opened(tmp_path, Format.jsonl, False, TAG):
        assert not leftover.exists()
        with (
            pytest.raises(CnnError, match="another cnn is writing"),
            parts.opened(tmp_path, Format.jsonl, False, TAG),
        ):
            pass


def test_a_file_of_results_is_not_a_folder_of_parts(tmp_path):
    assert parts.is_folder(f"{tmp_path}/new/") and parts.is_folder(str(tmp_path))
    assert not parts.is_folder(str(tmp_path / "labels.jsonl")) and not parts.is_folder(None)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["a.jpg", "--ray"], ["a.jpg", "--ray="]),
        (["--ray", "-o", "out/"], ["--ray=", "-o", "out/"]),
        (["--ray", "10.0.0.1:6379", "a.jpg"], ["--ray", "10.0.0.1:6379", "a.jpg"]),
        (["--ray=auto"], ["--ray=auto"]),
        (["a.jpg", "--", "--ray"], ["a.jpg", "--", "--ray"]),
    ],
)
def test_ray_takes_an_address_or_none(args, expected):
    assert optional_values(args) == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-f", "parquet", "-o", "{tmp}/o.parquet"], "--format parquet writes part files"),
        (["-f", "jsonl", "-o", "{tmp}/o/"], "--output DIR/ (part files) is written by --ray runs"),
    ],
)
def test_what_only_a_cluster_writes_is_refused_without_ray(cli, tmp_path, args, message):
    run = cli("classify", CAT, "-w", "none", *[a.format(tmp=tmp_path) for a in args])
    assert run.exit_code == 2
    assert run.stderr.startswith("cnn: error: ") and message in run.stderr
    assert len(run.stderr.splitlines()) == 1 and list(tmp_path.iterdir()) == []


def test_other_commands_refuse_parquet_in_one_line(cli):
    run = cli("models", "-f", "parquet")
    assert run.exit_code == 2 and run.stdout == ""
    assert run.stderr.strip() == (
        "cnn: error: --format parquet writes part files: only `cnn classify --ray --output DIR/` "
        "takes it (choose table, json, jsonl, csv)"
    )


def test_ray_without_ray_installed_says_how_to_install_it(cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without Ray finds
    run = cli("classify", CAT, "-w", "none", "--ray")
    assert run.exit_code == 2
    assert run.stderr.strip().endswith(
        'cnn: error: --ray needs Ray, which is not installed: pip install "cnncli[ray]"'
    )


@needs_ray
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-e", "keras", "--ray"], "--ray runs the model on LiteRT in every worker"),
        (["--ray", str(SAMPLES)], f"--ray took '{SAMPLES}' as the cluster's address"),
        (["--files-from", "-", "--ray"], "--files-from - (stdin) cannot be read by a cluster's"),
        (["-f", "table", "-o", "{tmp}/o/", "--ray"], "part files are jsonl, csv or parquet"),
    ],
)
def test_options_a_cluster_cannot_honour_are_one_line(cli, tmp_path, args, message):
    run = cli("classify", CAT, "-w", "none", *[a.format(tmp=tmp_path) for a in args])
    assert run.exit_code == 2, run.stderr
    lines = [line for line in run.stderr.splitlines() if "random weights" not in line]
    assert lines == [lines[0]] and lines[0].startswith("cnn: error: ") and message in lines[0]


def test_the_help_of_ray_names_the_extra_to_install(cli):
    """Rich reads `[ray]` in a help text as markup and drops it unless it is escaped."""
    run = cli("classify", "--help")
    assert run.exit_code == 0
    text = run.stdout + run.stderr  # (the runner's own output: Click prints the help there)
    assert 'install "cnncli[ray]"' in " ".join(text.replace("│", " ").split())
