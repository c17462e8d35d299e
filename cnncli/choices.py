"""The closed sets of values a user picks from, shared by the command line and the library.

They live apart from the code that acts on them (`images.fit`, `engines.open_classifier`,
`output.emit`) so that the command line can declare its options without importing NumPy, Pillow
or the engines: `cnn --help` stays instant.
"""

from __future__ import annotations

from enum import Enum

from cnncli.errors import UsageError


class Choice(str, Enum):
    """An option's value, spelled as the user types it."""

    @classmethod
    def parse(cls, name: str) -> Choice:
        """The value named `name` (an item of a comma list); `UsageError` otherwise."""
        values = [member.value for member in cls]
        if name not in values:
            raise UsageError(f"unknown {cls.noun()} '{name}': choose from {', '.join(values)}")
        return cls(name)

    @classmethod
    def metavar(cls) -> str:
        """How `--help` shows the values: `table|json|jsonl|csv`."""
        return "|".join(member.value for member in cls)

    @classmethod
    def noun(cls) -> str:
        return cls.__name__.lower()


class Resize(Choice):
    """How a photo becomes the model's square input (`images.fit`)."""

    #: The standard ImageNet evaluation view: shorter side to size / 0.875, then the centre.
    crop = "crop"
    #: The whole photo squashed to the square, as the plain Keras example does.
    stretch = "stretch"


class Engine(Choice):
    """What runs a model's forward pass (`engines.open_classifier`)."""

    #: LiteRT when its runtime is installed and the model converts, else Keras.
    auto = "auto"
    keras = "keras"
    litert = "litert"
    #: The LiteRT model, run by OpenVINO's CPU plugin (`openvino_engine`; an optional extra).
    openvino = "openvino"


class Format(Choice):
    """How a command prints its result (`output.emit`)."""

    table = "table"
    json = "json"
    jsonl = "jsonl"
    csv = "csv"
    #: Part files only (`cnn classify --ray --output DIR/`): a table format, not a stream.
    parquet = "parquet"

    @classmethod
    def printed(cls) -> tuple[Format, ...]:
        """The formats any command prints (`output.emit`): all but the part files' own."""
        return tuple(member for member in cls if member is not cls.parquet)

    @classmethod
    def metavar(cls) -> str:
        return "|".join(member.value for member in cls.printed())


class Precision(Choice):
    """The arithmetic a model runs in (`engines.open_classifier`)."""

    #: The model as trained: float32 weights and activations, on any engine.
    fp32 = "fp32"
    #: Full-integer post-training quantization (`quantize`): a LiteRT model, calibrated on photos.
    int8 = "int8"
