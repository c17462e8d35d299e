"""The command line's vocabulary: every option that more than one command takes, spelled once.

One grammar for every command: the architecture is always `--arch/-a`, weights `--weights/-w`,
a trained model `--model/-m` (in place of both), the engine `--engine/-e`, the batch size
`--batch-size/-b`, the format `--format/-f`, and `--output/-o` always names the command's main
output. An option that takes several values takes
them as one comma list (`-a vgg16,resnet50`), read by `comma_list` in one way everywhere.

Nothing here imports NumPy, Pillow or TensorFlow, so `cnn --help` stays instant.
"""

from __future__ import annotations

from typing import Annotated

import typer

from cnncli.choices import Engine, Format, Precision, Resize
from cnncli.errors import UsageError

ArchOption = Annotated[
    str, typer.Option("--arch", "-a", metavar="ARCH", help="Architecture (`cnn models`).")
]
#: The architecture of a command about one, as an argument (`cnn summary vgg16`) or as `-a`.
ArchArgument = Annotated[
    str | None, typer.Argument(metavar="ARCH", help="Architecture, as with --arch.")
]
MaybeArchOption = Annotated[
    str | None,
    typer.Option("--arch", "-a", metavar="ARCH", help="Architecture (`cnn models`)."),
]
ArchsOption = Annotated[
    str,
    typer.Option(
        "--arch", "-a", metavar="ARCH,...", help="Architectures, comma-separated (`cnn models`)."
    ),
]
WeightsOption = Annotated[
    str,
    typer.Option(
        "--weights",
        "-w",
        metavar="WEIGHTS",
        help="imagenet (download), none (random) or a .h5 weights file.",
    ),
]
WeightsListOption = Annotated[
    str,
    typer.Option(
        "--weights",
        "-w",
        metavar="WEIGHTS,...",
        help="imagenet, none or a .h5 file: one for all architectures, or one per architecture.",
    ),
]
ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        metavar="BUNDLE",
        help="A model `cnn train` wrote (its folder), in place of --arch and --weights.",
    ),
]
ModelsOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        metavar="BUNDLE,...",
        help="Trained models (folders `cnn train` wrote), comma-separated, beside --arch's.",
    ),
]
EngineOption = Annotated[
    Engine,
    typer.Option(
        "--engine",
        "-e",
        metavar=Engine.metavar(),
        help="auto: LiteRT when installed, else Keras.",
    ),
]
EnginesOption = Annotated[
    str,
    typer.Option(
        "--engine",
        "-e",
        metavar="ENGINE,...",
        help="Engines, comma-separated (keras, litert, openvino).",
    ),
]
PrecisionOption = Annotated[
    Precision,
    typer.Option(
        "--precision",
        metavar=Precision.metavar(),
        help="int8: a quantized LiteRT model, measured against fp32 (README: int8).",
    ),
]
PrecisionsOption = Annotated[
    str,
    typer.Option(
        "--precision", metavar="PRECISION,...", help="Precisions, comma-separated (fp32, int8)."
    ),
]
CalibrateOption = Annotated[
    str | None,
    typer.Option(
        metavar="DIR|GLOB",
        help="Photos to calibrate int8 on (default: the sample images, augmented to 64).",
    ),
]
TopOption = Annotated[
    int,
    typer.Option("--top", "-k", metavar="K", min=1, max=1000, help="How many classes to show."),
]
ResizeOption = Annotated[
    Resize | None,
    typer.Option(
        metavar=Resize.metavar(),
        help="crop: shorter side to size/0.875, centre crop; stretch: squash. "
        "Default: crop, or what a trained model was trained with.",
        show_default=False,
    ),
]
FormatOption = Annotated[
    Format, typer.Option("--format", "-f", metavar=Format.metavar(), help="Output format.")
]
#: `cnn classify`'s: a cluster's part files may also be Parquet.
ResultsFormatOption = Annotated[
    Format,
    typer.Option(
        "--format",
        "-f",
        metavar=f"{Format.metavar()}|parquet",
        help="Output format (parquet: part files of --ray --output DIR/).",
    ),
]
RayOption = Annotated[
    str | None,
    typer.Option(
        "--ray",
        metavar="[ADDRESS]",
        help="Run on a Ray cluster: ADDRESS, else $RAY_ADDRESS, else a local instance "
        '(pip install "cnncli\\[ray]").',
    ),
]

#: Options whose value may be left out (`--ray` alone, or before another option): Typer's
#: Click has no such option, so `optional_values` gives them an empty value instead.
OPTIONAL_VALUES = ("--ray",)


def optional_values(args: list[str]) -> list[str]:
    """`args` with each of `OPTIONAL_VALUES` that has no value (last, or followed by another
    option) written `--ray=`: an empty value, which the command reads as "no address"."""
    out = list(args)
    end = out.index("--") if "--" in out else len(out)
    for i in range(end):
        following = out[i + 1] if i + 1 < end else "-"
        if out[i] in OPTIONAL_VALUES and following.startswith("-"):
            out[i] += "="
    return out


BatchSizeOption = Annotated[
    int,
    typer.Option("--batch-size", "-b", metavar="N", min=1, help="Images per forward pass."),
]
DebugOption = Annotated[
    bool, typer.Option("--debug", help="Show tracebacks and native libraries' own output.")
]


def comma_list(text: str, option: str) -> list[str]:
    """The items of a comma-separated option, the one way every such option is read: blank
    items are ignored (`-a resnet50,`), a list with none at all is a usage error."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise UsageError(f"{option} '{text}' names nothing: give one or more, separated by commas")
    return items
