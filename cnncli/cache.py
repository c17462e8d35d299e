"""The compiled-model cache: convert a Keras model once, load it in milliseconds ever after.

An entry is a model file plus a JSON record beside it, keyed by everything that changes the
file: architecture, the weights' content hash, input size, engine, precision (an int8 model also
by its calibration set's fingerprint), and the package versions that produced it. Both files are
written to a temporary name and renamed into place, the record last, so a crash, Ctrl-C or a
second process never leaves an entry that looks whole but is not. The record holds the model
file's SHA-256, so a file altered since (by a disk, a sync tool, a hand) is noticed before it
gives wrong labels. Temporary names carry the writer's process id, so `clear` can remove what a
killed writer left without touching a live one's.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from rich import box
from rich.console import RenderableType
from rich.table import Table

from cnncli import __version__, files
from cnncli.errors import CnnError
from cnncli.output import CsvRows, human_bytes
from cnncli.registry import Arch

#: Packages whose versions change what a conversion produces.
VERSIONED = ("tensorflow", "keras", "ai-edge-litert")


def package_version(name: str) -> str:
    """Installed version of `name` (without importing it), or "absent"."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


@dataclass(frozen=True)
class Key:
    """What identifies a compiled model."""

    arch: str
    weights: str  # "imagenet", or "sha256:<hex>" of the weights file or trained model
    input_size: int
    engine: str
    versions: str
    #: Defaults for records written before int8 existed: they were float32.
    precision: str = "fp32"
    #: `quantize.CalibrationSource.fingerprint()` of an int8 model's calibration set; "" for fp32.
    calibration: str = ""

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Entry:
    """One cached model as `cnn cache list` shows it."""

    key: Key
    path: Path
    size: int
    created: float

    @property
    def age_seconds(self) -> float:
        return time.time() - self.created


class CacheUnwritable(CnnError):
    """The cache directory cannot take a new entry (a file in its place, no permission)."""


class ChangedEntry(ValueError):
    """A cached model file whose content is no longer what was written."""


class ModelCache:
    """Compiled models under one directory (`CNN_CACHE_DIR`, `$XDG_CACHE_HOME/cnncli`, ...)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def key(
        self,
        record: Arch,
        identity: str,
        engine: str,
        precision: str = "fp32",
        calibration: str = "",
    ) -> Key:
        """The key for the network `record` describes, with the weights `identity` names by
        content (`networks.Network.identity`), on `engine`, in `precision` (int8: calibrated on
        the set whose fingerprint is `calibration`); random weights have none."""
        if identity == "none":
            raise ValueError("random weights are never cached")
        versions = ",".join(f"{p}={package_version(p)}" for p in VERSIONED)
        versions += f",cnncli={__version__}"
        return Key(
            record.name, identity, record.input_size, engine, versions, precision, calibration
        )

    def model_path(self, key: Key, suffix: str) -> Path:
        return self.root / f"{key.arch}-{key.engine}-{key.precision}-{key.digest()}{suffix}"

    def lookup(self, key: Key, suffix: str) -> Path | None:
        """The model file of a complete entry for `key`, or None."""
        path = self.model_path(key, suffix)
        return path if path.is_file() and _record_path(path).is_file() else None

    def verify(self, path: Path) -> None:
        """Raise `ChangedEntry` unless the model file still has the content its record hashed."""
        try:
            recorded = json.loads(_record_path(path).read_text(encoding="utf-8")).get("sha256")
        except (OSError, ValueError, AttributeError) as exc:
            raise ChangedEntry(f"its record is unreadable ({exc})") from exc
        actual = _sha256(path)
        if actual != recorded:
            raise ChangedEntry(
                f"its content changed since it was cached: sha256 {actual[:12]}..., "
                f"recorded {str(recorded)[:12]}..."
            )

    def store(self, key: Key, suffix: str, write: Callable[[Path], None]) -> Path:
        """Create the entry: `write(tmp)` produces the model file, then both are renamed in.

        `CacheUnwritable` comes before `write` is called, so no conversion is wasted on a cache
        that cannot keep it."""
        path = self.model_path(key, suffix)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = files.temporary(path)
        except OSError as exc:
            raise CacheUnwritable(
                f"cannot write to the model cache {self.root} ({exc.strerror or exc})"
            ) from exc
        files.commit(tmp, path, write)
        record = {**asdict(key), "sha256": _sha256(path), "created": time.time()}
        text = json.dumps(record, indent=1)
        files.atomic_write(_record_path(path), lambda tmp: tmp.write_text(text, encoding="utf-8"))
        return path

    def discard(self, path: Path) -> None:
        """Remove an entry (record first, so a half-removed entry is never seen as whole)."""
        for file in (_record_path(path), path):
            with contextlib.suppress(FileNotFoundError):
                file.unlink()

    def entries(self) -> list[Entry]:
        """Every complete entry, oldest first."""
        found = []
        for record in sorted(self.root.glob("*.entry.json")):
            try:
                data = json.loads(record.read_text(encoding="utf-8"))
                data.pop("sha256", None)
                created = data.pop("created")
                model = record.with_name(record.name.removesuffix(".entry.json"))
                found.append(Entry(Key(**data), model, model.stat().st_size, created))
            except (OSError, ValueError, TypeError, KeyError):
                continue  # a stray or foreign file is not an entry
        return sorted(found, key=lambda e: e.created)

    def clear(self, arch: str | None = None) -> tuple[list[Entry], list[Path]]:
        """Remove every entry, or those of one architecture, and every temporary file whose
        writer is dead (killed mid-conversion); returns both."""
        removed = [e for e in self.entries() if arch is None or e.key.arch == arch]
        for entry in removed:
            self.discard(entry.path)
        leftovers = [tmp for tmp in self.root.glob("**/.*.tmp") if files.abandoned(tmp)]
        for tmp in leftovers:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        if arch is None:
            shutil.rmtree(self.root / "hashes", ignore_errors=True)
        return removed, leftovers

    def file_hash(self, path: Path) -> str:
        """SHA-256 of a weights file, remembered by (path, size, mtime) so a warm run skips it."""
        stat = path.stat()
        memo = (
            self.root
            / "hashes"
            / hashlib.sha256(
                f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()
            ).hexdigest()[:24]
        )
        with contextlib.suppress(OSError):
            return memo.read_text(encoding="ascii").strip()
        digest = _sha256(path)
        with contextlib.suppress(OSError):  # a cache that cannot keep the memo costs a re-hash
            memo.parent.mkdir(parents=True, exist_ok=True)
            files.atomic_write(memo, lambda tmp: tmp.write_text(digest, encoding="ascii"))
        return digest


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _record_path(model: Path) -> Path:
    return model.with_name(model.name + ".entry.json")


def cleared(removed: list[Entry], leftovers: list[Path]) -> str:
    """The line `cnn cache clear` ends with: what it removed and the space it freed."""
    freed = sum(entry.size for entry in removed) / 2**20
    line = f"removed {len(removed)} cached models ({freed:.1f} MB)"
    if leftovers:
        line += f" and {len(leftovers)} temporary file(s) of interrupted conversions"
    return line


def document(entries: list[Entry]) -> list[dict[str, object]]:
    """`cnn cache list --format json`: one object per entry."""
    return [
        {
            "arch": e.key.arch,
            "weights": e.key.weights,
            "engine": e.key.engine,
            "precision": e.key.precision,
            "input_size": e.key.input_size,
            "bytes": e.size,
            "age_seconds": round(e.age_seconds, 1),
            "path": str(e.path),
        }
        for e in entries
    ]


def render(entries: list[Entry], root: Path) -> list[RenderableType]:
    table = Table(
        box=box.SIMPLE_HEAD, title=f"{len(entries)} cached models in {root}", title_justify="left"
    )
    for column in ("arch", "weights", "engine", "precision", "size", "age"):
        table.add_column(column, justify="right" if column in ("size", "age") else "left")
    for e in entries:
        table.add_row(
            e.key.arch,
            e.key.weights[:19],
            e.key.engine,
            e.key.precision,
            human_bytes(e.size),
            _age(e.age_seconds),
        )
    return [table]


def rows(entries: list[Entry]) -> CsvRows:
    records = document(entries)
    header = list(records[0]) if records else ["arch", "weights", "engine", "precision", "bytes"]
    return header, [list(r.values()) for r in records]


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"
