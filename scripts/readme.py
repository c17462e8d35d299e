"""Keep README.md true: run its examples and check their output, or write it from real runs.

    python scripts/readme.py --check     # exit 1, with a diff, when an example's output drifted
    python scripts/readme.py --update    # rewrite every example's output from a real run

An example is a ``` block whose first line starts with `$ `: shell commands (`$ ` lines, with `\\`
continuations), each followed by what it prints (stdout and stderr, as a terminal would show
them). The blocks run in order in one shell, as a reader would type them in one terminal, with
one compiled-model cache, from the repository's root, `cnn` meaning this checkout's
`python -m cnncli`. A block right after the line `<!-- readme: not run (REASON) -->` is left as
written (a download, a Ctrl-C).

Times differ from run to run: in --check, a number before a unit of time (`2.4 s`, `12.0 ms`,
`238.1 images/s`) matches any number, and runs of spaces or of table rules match any length.
Python examples (`>>>`) are doctests: `tests/test_readme.py` runs them.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SKIP = re.compile(r"<!-- readme: not run \(.+\) -->")
#: A number followed by a unit of time or speed, or the compare table's `12.0 (litert)` and
#: `12.0 (litert int8)`.
TIMING = re.compile(r"\d[\d,]*(?:\.\d+)?(?=\s?(?:s|ms|min|h|d|images/s)\b|\s\((?:keras|litert)\b)")


#: Printed between two commands of a block, to tell their outputs apart.
MARKER = "@@ readme.py: next command @@"


@dataclass
class Example:
    """One runnable block: where it is in the README, and each command with its output."""

    start: int  # index of the first line inside the fence
    end: int  # index of the closing fence
    steps: list[tuple[str, list[str]]]

    def lines(self, outputs: list[list[str]] | None = None) -> list[str]:
        """The block's text, with its own outputs or with `outputs`."""
        given = outputs or [output for _, output in self.steps]
        return [
            line
            for (command, _), output in zip(self.steps, given, strict=True)
            for line in ["$ " + command, *output]
        ]


def examples(lines: list[str]) -> list[Example]:
    """The runnable blocks of the README's lines, in order."""
    found, i = [], 0
    while i < len(lines):
        if lines[i].startswith("```") and i + 1 < len(lines) and lines[i + 1].startswith("$ "):
            end = lines.index("```", i + 1)
            if not (i > 0 and SKIP.fullmatch(lines[i - 1].strip())):
                found.append(Example(i + 1, end, _steps(lines[i + 1 : end])))
            i = end
        i += 1
    return found


def _steps(block: list[str]) -> list[tuple[str, list[str]]]:
    """A block's commands (with their `\\` continuation lines) and the output under each."""
    steps: list[tuple[str, list[str]]] = []
    continued = False
    for line in block:
        if continued:
            steps[-1] = (steps[-1][0] + "\n" + line, steps[-1][1])
        elif line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            steps[-1][1].append(line)
            continue
        continued = line.endswith("\\")
    return steps


def run(found: list[Example], cache: Path) -> list[list[list[str]]]:
    """What each command of each example prints, run in order in one shell, as a reader would
    type them in one terminal (a variable set in one example holds in the next)."""
    script = ['cnn() { "$PYTHON" -m cnncli "$@"; }']
    for example in found:
        for command, _ in example.steps:
            script += [command, f"echo '{MARKER}'"]
    env = {**os.environ, "PYTHON": sys.executable, "CNN_CACHE_DIR": str(cache), "NO_COLOR": "1"}
    proc = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=1800,
    )
    outputs: list[list[str]] = [[]]
    for line in proc.stdout.splitlines():
        if line == MARKER:
            outputs.append([])
        else:
            outputs[-1].append(line.rstrip())
    per_example, start = [], 0
    for example in found:
        per_example.append(outputs[start : start + len(example.steps)])
        start += len(example.steps)
    return per_example


def normalized(lines: list[str]) -> list[str]:
    """Lines as --check compares them: timings as `#`, blank runs and table rules folded."""
    out = []
    for line in lines:
        line = TIMING.sub("#", line.rstrip())
        line = re.sub(r"([─━═┄])\1+", r"\1", line)
        out.append(re.sub(r"\s+", " ", line).strip())
    return out


def drift(example: Example, outputs: list[list[str]]) -> list[str]:
    """The diff between an example as written and as a real run prints it, or nothing."""
    written, actual = example.lines(), example.lines(outputs)
    if normalized(written) == normalized(actual):
        return []
    title = "README: $ " + example.steps[0][0].splitlines()[0]
    return list(difflib.unified_diff(written, actual, title, "a real run", lineterm=""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="compare, exit 1 on drift")
    mode.add_argument("--update", action="store_true", help="rewrite outputs from real runs")
    args = parser.parse_args()
    lines = README.read_text(encoding="utf-8").splitlines()
    problems: list[str] = []
    found = examples(lines)
    with tempfile.TemporaryDirectory() as cache:
        outputs = run(found, Path(cache))
    for example, output in reversed(list(zip(found, outputs, strict=True))):  # indices stay valid
        if args.update:
            lines[example.start : example.end] = example.lines(output)
        problems = drift(example, output) + problems
    if args.update:
        README.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return 0
    print("\n".join(problems) or "README examples match real runs")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
