"""The README cannot drift: its command examples are real runs, its Python examples doctests."""

from __future__ import annotations

import doctest
import os
import subprocess
import sys

from tests.conftest import ROOT, needs_shared


@needs_shared
def test_every_command_example_prints_what_the_readme_shows():
    proc = subprocess.run(
        [sys.executable, "scripts/readme.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@needs_shared
def test_the_python_examples_run_as_shown(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("CNN_CACHE_DIR", str(tmp_path))
    result = doctest.testfile(
        os.fspath(ROOT / "README.md"),
        module_relative=False,
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
    )
    assert result.attempted >= 10 and result.failed == 0
