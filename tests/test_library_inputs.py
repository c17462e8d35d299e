"""Discovering a photo library: directories (recursive or not), symlink loops, globs, listings
from a file or stdin, files that are not images; lazily, so a huge tree starts at once."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from cnncli.inputs import Entry, Inputs


@pytest.fixture
def library(tmp_path):
    """root/{b.jpg, a.png, notes.txt, 2020/{x.jpg, trip/y.JPG, loop -> ..}, empty/}"""
    root = tmp_path / "root"
    (root / "2020" / "trip").mkdir(parents=True)
    (root / "empty").mkdir()
    for name in ("b.jpg", "a.png", "notes.txt", "2020/x.jpg", "2020/trip/y.JPG"):
        (root / name).write_bytes(b"x")
    (root / "2020" / "loop").symlink_to("..", target_is_directory=True)
    return root


def images(inputs: Inputs, **kwargs) -> list[str]:
    return [e.image for e in inputs.entries(**kwargs)]


def test_a_directory_gives_its_own_images_in_name_order(library):
    skipped: list[tuple[str, str]] = []
    found = images(Inputs((str(library),)), skipped=lambda *s: skipped.append(s))
    assert found == [str(library / "a.png"), str(library / "b.jpg")]
    assert dict(skipped) == {
        str(library / "2020"): "a directory (--recursive descends into it)",
        str(library / "empty"): "a directory (--recursive descends into it)",
        str(library / "notes.txt"): "not an image file, by its extension",
    }


def test_recursive_descends_once_through_a_symlink_loop(library):
    skipped: list[tuple[str, str]] = []
    found = images(Inputs((str(library),), recursive=True), skipped=lambda *s: skipped.append(s))
    names = ["2020/trip/y.JPG", "2020/x.jpg", "a.png", "b.jpg"]
    assert found == [str(library / n) for n in names]
    loop = [why for path, why in skipped if path == str(library / "2020" / "loop")]
    assert loop == ["already visited (a symlink loop or a second link to it)"]


@pytest.fixture
def deep(tmp_path):
    """A photo 1,100 folders down (past Python's recursion limit), removed level by level after
    the test: pytest's own clean-up recurses and would fail on it."""
    folders = [tmp_path / "deep"]
    for _ in range(1_100):
        folders.append(folders[-1] / "d")
    for folder in folders:  # one by one: mkdir(parents=True) recurses too
        folder.mkdir()
    (folders[-1] / "bottom.jpg").write_bytes(b"x")
    (folders[0] / "top.jpg").write_bytes(b"x")
    yield folders
    (folders[-1] / "bottom.jpg").unlink()
    (folders[0] / "top.jpg").unlink()
    for folder in reversed(folders):
        folder.rmdir()


def test_a_tree_deeper_than_the_recursion_limit_is_walked(deep):
    inputs = Inputs((str(deep[0]),), recursive=True)
    assert images(inputs) == [str(deep[-1] / "bottom.jpg"), str(deep[0] / "top.jpg")]
    assert inputs.count() == 2


def test_the_same_directory_twice_is_listed_twice(library):
    trip = str(library / "2020" / "trip")
    assert images(Inputs((trip, trip), recursive=True)) == [f"{trip}/y.JPG"] * 2


def test_a_tree_without_images_is_one_error(library):
    [entry] = Inputs((str(library / "empty"),), recursive=True).entries()
    assert entry.error == "directory holds no image files"


def test_listing_from_a_file_and_from_stdin_mixes_with_arguments(library, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text(f"{library / 'b.jpg'}\n\n{library / '2020'}\r\n{library / 'gone.jpg'}\n")
    mixed = Inputs((str(library / "*.png"),), files_from=str(listing))
    entries = list(mixed.entries())
    assert [(e.image, e.error is None) for e in entries] == [
        (str(library / "a.png"), True),
        (str(library / "b.jpg"), True),
        (str(library / "2020" / "x.jpg"), True),
        (str(library / "gone.jpg"), False),
    ]
    assert mixed.count() == 4
    from_stdin = Inputs((), files_from="-")
    listed = images(from_stdin, stdin=io.StringIO(listing.read_text()))
    assert listed == [e.image for e in entries[1:]]
    assert from_stdin.count() is None  # stdin can be read only once: no total in advance


def test_a_listing_is_read_as_bytes_names_as_the_file_system_spells_them(library, tmp_path):
    """A BOM made the first path "no such file"; a line that is not UTF-8 aborted the whole run.
    Linux names are bytes: such a line may still name a real file, which it opens."""
    latin1 = os.fsencode(library) + b"/caf\xe9.jpg"
    (library / os.fsdecode(b"caf\xe9.jpg")).write_bytes(b"x")
    listing = tmp_path / "list.txt"
    listing.write_bytes(
        b"\xef\xbb\xbf"
        + os.fsencode(library / "b.jpg")
        + b"\n"
        + latin1
        + b"\r\n"
        + os.fsencode(library)
        + b"/gone\xff.jpg\n"
        + b"\n"
    )
    entries = list(Inputs((), files_from=str(listing)).entries())
    assert entries == [
        Entry(str(library / "b.jpg")),
        Entry(os.fsdecode(latin1)),
        Entry(
            os.fsdecode(os.fsencode(library) + b"/gone\xff.jpg"),
            "no such file (and the name is not UTF-8: check the list's encoding)",
        ),
    ]
    assert Path(entries[1].image).read_bytes() == b"x"


def test_a_listing_may_be_any_readable_stream_read_once(library, tmp_path):
    """A pipe (as `<(ls)` gives) is read once: no second pass to count it."""
    read, write = os.pipe()
    os.write(write, f"{library / 'a.png'}\n".encode())
    os.close(write)
    piped = Inputs((), files_from=f"/dev/fd/{read}")
    try:
        assert piped.count() is None
        assert images(piped) == [str(library / "a.png")]
    finally:
        os.close(read)
    assert images(Inputs((str(library / "b.jpg"),), files_from=os.devnull)) == [
        str(library / "b.jpg")
    ]


def test_exclude_drops_images_from_entries_and_count(library):
    inputs = Inputs((str(library),), recursive=True)
    done = frozenset({str(library / "a.png"), str(library / "2020" / "x.jpg")})
    assert images(inputs, exclude=done) == [
        str(library / "2020/trip/y.JPG"),
        str(library / "b.jpg"),
    ]
    assert inputs.count(done) == 2


def test_discovery_is_lazy(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (first / "1.jpg").write_bytes(b"x")
    entries = Inputs((str(first), str(second))).entries()
    assert next(entries).image == str(first / "1.jpg")
    (second / "2.jpg").write_bytes(b"x")  # made after discovery started: still found
    assert [e.image for e in entries] == [str(second / "2.jpg")]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every directory")
def test_an_unreadable_directory_is_an_error_entry(library):
    locked = library / "2020"
    locked.chmod(0)
    try:
        entries = list(Inputs((str(library),), recursive=True).entries())
    finally:
        locked.chmod(0o755)
    assert (str(locked), "cannot list the directory (Permission denied)") in [
        (e.image, e.error) for e in entries
    ]


def permissions_apply(tmp_path) -> bool:
    """Whether this process is refused an unreadable folder (root is not, unless it dropped
    CAP_DAC_OVERRIDE)."""
    probe = tmp_path / "probe"
    probe.mkdir(mode=0)
    try:
        os.listdir(probe)
    except PermissionError:
        return True
    finally:
        probe.rmdir()
    return False


def test_a_path_through_an_unreadable_folder_says_permission_denied(library, tmp_path):
    """A glob into an unreadable folder said "no file matches", a file in it "no such file"."""
    if not permissions_apply(tmp_path):
        pytest.skip("this process reads every folder (root)")
    locked = library / "2020"
    named = [str(locked / "*.jpg"), str(locked / "trip" / "*.JPG"), str(locked / "x.jpg")]
    locked.chmod(0)
    try:
        entries = list(Inputs(tuple(named)).entries())
    finally:
        locked.chmod(0o755)
    reason = f"permission denied: cannot read the folder {locked} (make it readable)"
    assert [(e.image, e.error) for e in entries] == [(name, reason) for name in named]
