"""An architecture's anatomy as numbers: where its parameters, compute and activation memory go.

`cnn summary ARCH` answers the questions a model table cannot: how much of VGG16 is its
classifier (most of it), why a ResNet-50 is cheaper to run than a VGG16 with a fifth of the
weights, which resolution holds the activation memory. Everything is computed from a built Keras
model (random weights are enough), so the figures describe the network actually run, not a paper.

Conventions, chosen to match the papers' tables:
* MACs are multiply-accumulates of convolutions and fully connected layers only, for one image
  (He et al. 2015, Table 1 counts "multiply-adds" the same way); norms, activations, pooling and
  additions count as zero.
* Activation memory is float32 (4 bytes) per output element, batch 1, summed over every layer
  including the input: the memory a forward pass writes, not the peak a runtime keeps alive.
* Depth is the number of weighted layers (convolutions and dense) on the longest input-to-output
  path, the number in "ResNet-50".

Nothing here imports TensorFlow at import time: the Keras layer classes are looked up through
`import_keras()` only when a model (which already needed Keras) is analysed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from cnncli import registry
from cnncli.output import CsvRows, bar, human, human_bytes
from cnncli.tf_runtime import import_keras

#: Parameter kinds, in the order every table and JSON document lists them.
KINDS = ("conv", "depthwise", "dense", "norm", "other")
#: Kinds whose layers carry the multiply-accumulates and count towards depth.
WEIGHTED = frozenset({"conv", "depthwise", "dense"})
#: Stage of layers whose output has no spatial dimensions (after global pooling or flattening).
VECTOR = "vector"
BYTES_PER_VALUE = 4  # float32

# Finer operation than the kind: each needs its own MACs formula. Kind of each operation:
_KIND_OF_OP = {
    "conv": "conv",
    "grouped": "depthwise",  # Conv2D(groups=channels): ConvNeXt's depthwise convolutions
    "transpose": "conv",
    "depthwise": "depthwise",
    "separable": "depthwise",
    "dense": "dense",
    "norm": "norm",
    "other": "other",
}


@dataclass
class LayerStats:
    """One layer's share of the model: its output, weights, compute and activation memory."""

    name: str
    kind: str
    output_shape: tuple[int | None, ...]  # first output, batch dimension dropped
    params: int
    macs: int
    activation_bytes: int
    stage: str = VECTOR  # resolution it belongs to; padding counts at its input's resolution


@dataclass
class StageStats:
    """Layers whose output has one spatial resolution: where memory and compute concentrate."""

    stage: str  # "112x112", or VECTOR
    layers: int
    bytes: int
    macs: int


@dataclass
class Anatomy:
    """The numbers `cnn summary` prints, for one architecture at its own input size."""

    arch: str
    input_shape: list[int]
    preprocessing: str
    params_total: int
    params_trainable: int
    params_non_trainable: int
    params_by_kind: dict[str, int]
    macs: int
    activation_bytes: int
    peak_layer: str
    peak_bytes: int
    by_stage: list[StageStats]
    weights_mb: float
    depth: int
    top1: float | None
    top5: float | None
    layers: list[LayerStats] = field(default_factory=list)

    @property
    def macs_by_kind(self) -> dict[str, int]:
        """MACs per kind (only the weighted kinds are ever non-zero), for the compute shares."""
        return _sum_by_kind(self.layers, "macs")

    def as_dict(self, layers: bool = False) -> dict[str, Any]:
        """The JSON document of `cnn summary --json`: exact integers, per-layer rows on request."""
        doc: dict[str, Any] = {
            "arch": self.arch,
            "input_shape": list(self.input_shape),
            "preprocessing": self.preprocessing,
            "params": {
                "total": self.params_total,
                "trainable": self.params_trainable,
                "non_trainable": self.params_non_trainable,
            },
            "params_by_kind": {kind: self.params_by_kind[kind] for kind in KINDS},
            "macs": self.macs,
            "activation_bytes": {
                "total": self.activation_bytes,
                "peak_layer": {"name": self.peak_layer, "bytes": self.peak_bytes},
                "by_stage": [vars(stage).copy() for stage in self.by_stage],
            },
            "weights_mb": round(self.weights_mb, 2),
            "depth": self.depth,
            "reference": {"top1": self.top1, "top5": self.top5},
        }
        if layers:
            doc["layers"] = [
                {
                    **{c: getattr(row, c) for c in LAYER_COLUMNS},
                    "output_shape": list(row.output_shape),
                }
                for row in self.layers
            ]
        return doc


# --- analysis ---------------------------------------------------------------------------------


def analyse(model: Any, arch: str | registry.Arch) -> Anatomy:
    """Measure `model` (a built Keras model of `arch`, a name or record) layer by layer."""
    record = arch if isinstance(arch, registry.Arch) else registry.get(arch)
    rows = [_layer_stats(layer) for layer in _leaves(model, top=True)]
    total = int(model.count_params())
    trainable = _count(model.trainable_weights)
    by_kind = _sum_by_kind(rows, "params")
    # Weights owned by no leaf layer (none in Keras's applications) still belong to the total.
    by_kind["other"] += total - sum(by_kind.values())
    peak = max(rows, key=lambda row: row.activation_bytes)
    return Anatomy(
        arch=record.name,
        input_shape=[int(d) for d in model.inputs[0].shape[1:]],
        preprocessing=record.preprocessing,
        params_total=total,
        params_trainable=trainable,
        params_non_trainable=total - trainable,
        params_by_kind=by_kind,
        macs=sum(row.macs for row in rows),
        activation_bytes=sum(row.activation_bytes for row in rows),
        peak_layer=peak.name,
        peak_bytes=peak.activation_bytes,
        by_stage=_stages(rows),
        weights_mb=total * BYTES_PER_VALUE / 2**20,
        depth=_depth(model),
        top1=record.top1,
        top5=record.top5,
        layers=rows,
    )


def _count(weights: Sequence[Any]) -> int:
    """Number of scalars in `weights` (Keras variables)."""
    return sum(math.prod(int(d) for d in w.shape) for w in weights)


def _sum_by_kind(rows: Sequence[LayerStats], attribute: str) -> dict[str, int]:
    """`attribute` of `rows` summed per kind, every kind present (zero if no layer has it)."""
    sums = dict.fromkeys(KINDS, 0)
    for row in rows:
        sums[row.kind] += getattr(row, attribute)
    return sums


def _is_model(layer: Any) -> bool:
    return isinstance(layer, import_keras().Model)


def _leaves(model: Any, top: bool) -> Iterator[Any]:
    """The model's layers with nested models (ConvNeXt's Sequential stem) opened up.

    A nested model's own input layer is skipped: its tensor is the outer layer's output, already
    counted once.
    """
    input_layer = import_keras().layers.InputLayer
    for layer in model.layers:
        if _is_model(layer):
            yield from _leaves(layer, top=False)
        elif top or not isinstance(layer, input_layer):
            yield layer


def _operation(layer: Any) -> str:
    """Which MACs formula `layer` needs, by its Keras class (subclasses included)."""
    layers = import_keras().layers
    classes = (
        ("separable", (layers.SeparableConv1D, layers.SeparableConv2D)),
        ("depthwise", (layers.DepthwiseConv1D, layers.DepthwiseConv2D)),
        ("transpose", (layers.Conv1DTranspose, layers.Conv2DTranspose, layers.Conv3DTranspose)),
        ("conv", (layers.Conv1D, layers.Conv2D, layers.Conv3D)),
        ("dense", (layers.Dense,)),
        (
            "norm",
            (
                layers.BatchNormalization,
                layers.LayerNormalization,
                layers.GroupNormalization,
                layers.Normalization,
            ),
        ),
    )
    op = next((op for op, types in classes if isinstance(layer, types)), "other")
    if op == "conv" and layer.groups > 1 and layer.groups == layer.input.shape[-1]:
        return "grouped"
    return op


def kind_of(layer: Any) -> str:
    """The parameter kind of a Keras layer: conv, depthwise, dense, norm or other."""
    return _KIND_OF_OP[_operation(layer)]


def _layer_stats(layer: Any) -> LayerStats:
    """One row: shapes and MACs from every call of the layer (Keras applications call once)."""
    op = _operation(layer)
    nodes = layer._inbound_nodes
    outputs = [t for node in nodes for t in node.output_tensors]
    calls = [
        (n.input_tensors[0].shape, n.output_tensors[0].shape) for n in nodes if n.input_tensors
    ]
    macs = sum(_macs(layer, op, x, y) for x, y in calls)
    shape = outputs[0].shape[1:] if outputs else ()
    if (
        isinstance(layer, _padding_classes()) and calls
    ):  # a border added for the next layer, not a stage
        shape = calls[0][0][1:]
    return LayerStats(
        name=layer.name,
        kind=_KIND_OF_OP[op],
        output_shape=tuple(outputs[0].shape[1:]) if outputs else (),
        params=int(layer.count_params()),
        macs=int(macs),
        activation_bytes=sum(_elements(t.shape) for t in outputs) * BYTES_PER_VALUE,
        stage=_stage_key(tuple(shape)),
    )


def _padding_classes() -> tuple[type, ...]:
    layers = import_keras().layers
    return (
        layers.ZeroPadding1D,
        layers.ZeroPadding2D,
        layers.ZeroPadding3D,
        layers.Cropping1D,
        layers.Cropping2D,
        layers.Cropping3D,
    )


def _elements(shape: Sequence[int | None]) -> int:
    """Values per example in a tensor of `shape` (batch dimension dropped)."""
    return math.prod(d or 0 for d in shape[1:])


def _spatial(shape: Sequence[int | None], channels_first: bool) -> tuple[int, int]:
    """(positions, channels) of a batched feature-map shape."""
    dims = [d or 0 for d in shape[1:]]
    if channels_first:
        return math.prod(dims[1:]), dims[0]
    return math.prod(dims[:-1]), dims[-1]


def _macs(layer: Any, op: str, x: Sequence[int | None], y: Sequence[int | None]) -> int:
    """Multiply-accumulates of one call, input shape `x` to output shape `y` (batch 1)."""
    if op == "dense":  # Dense maps the last axis; leading axes (ConvNeXt's h, w) repeat it
        return _spatial(y, False)[0] * (x[-1] or 0) * layer.units
    if op not in ("conv", "grouped", "transpose", "depthwise", "separable"):
        return 0
    config = layer.get_config()
    first = config.get("data_format") == "channels_first"
    kernel = math.prod(config["kernel_size"])
    (in_positions, in_c), (out_positions, out_c) = _spatial(x, first), _spatial(y, first)
    if op in ("conv", "grouped"):
        return out_positions * out_c * kernel * in_c // config.get("groups", 1)
    if op == "transpose":  # every input position scatters a kernel into every output channel
        return in_positions * in_c * kernel * out_c
    depthwise = out_positions * in_c * config["depth_multiplier"] * kernel
    if op == "depthwise":
        return depthwise
    return depthwise + out_positions * out_c * in_c * config["depth_multiplier"]


def _stage_key(shape: Sequence[int | None]) -> str:
    """The stage of an output shape (batch dropped): "112x112" for a feature map, else VECTOR."""
    spatial = shape[:-1]
    return "x".join(str(d) for d in spatial) if spatial else VECTOR


def _stages(rows: Sequence[LayerStats]) -> list[StageStats]:
    """Layers grouped by output resolution, largest first, the flat layers last."""
    stages: dict[str, StageStats] = {}
    for row in rows:
        stage = stages.setdefault(row.stage, StageStats(row.stage, 0, 0, 0))
        stage.layers += 1
        stage.bytes += row.activation_bytes
        stage.macs += row.macs

    def order(stage: StageStats) -> tuple[bool, int]:
        if stage.stage == VECTOR:
            return True, 0
        return False, -math.prod(int(d) for d in stage.stage.split("x"))

    return sorted(stages.values(), key=order)


def _producer(tensor: Any) -> Any:
    """The graph node (one call of one layer) that produced a symbolic Keras tensor."""
    operation, node_index, _ = tensor._keras_history
    return operation._inbound_nodes[node_index]


def _depth(model: Any) -> int:
    """Weighted layers on the longest input-to-output path of `model`'s layer graph.

    Iterative (DenseNet-201 and ResNet-152 are deeper than Python's recursion limit allows), over
    graph nodes rather than layers so that a layer called twice is two steps. A nested model
    counts as its own longest path.
    """
    longest: dict[int, int] = {}
    stack = [_producer(t) for t in model.outputs]
    while stack:
        node = stack[-1]
        if id(node) in longest:
            stack.pop()
            continue
        parents = [_producer(t) for t in node.input_tensors]
        pending = [p for p in parents if id(p) not in longest]
        if pending:
            stack.extend(pending)
            continue
        stack.pop()
        own = _own_depth(node.operation)
        longest[id(node)] = max((longest[id(p)] for p in parents), default=0) + own
    return max(longest[id(_producer(t))] for t in model.outputs)


def _own_depth(operation: Any) -> int:
    """Depth one call of `operation` adds to a path: 1 per weighted layer, a model's own depth."""
    if _is_model(operation):
        return _depth(operation)
    return 1 if kind_of(operation) in WEIGHTED else 0


# --- presentation -----------------------------------------------------------------------------


def human_macs(n: float) -> str:
    """MACs in G (10^9), the unit of the papers' tables: 15.47 G."""
    return f"{n / 1e9:.2f} G"


def _share(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def render(anatomy: Anatomy, layers: bool = False) -> list[Any]:
    """Rich renderables for the terminal: headline, kinds, memory by stage, layers on request."""
    out = [_headline(anatomy), _kind_table(anatomy), _memory_line(anatomy)]
    out.append(_stage_table(anatomy))
    if layers:
        out.append(_layer_table(anatomy))
    return out


def _headline(a: Anatomy) -> Any:
    from rich.text import Text

    size = "x".join(str(d) for d in a.input_shape)
    top1 = f"{a.top1:.1f}%" if a.top1 is not None else "n/a"
    top5 = f"{a.top5:.1f}%" if a.top5 is not None else "n/a"
    text = Text()
    text.append(a.arch, style="bold")
    text.append(
        f"  input {size}  preprocessing {a.preprocessing}  depth {a.depth}  "
        f"top-1 {top1}  top-5 {top5}  weights {a.weights_mb:.1f} MB\n"
    )
    text.append(
        f"{human(a.params_total)} parameters ({a.params_total:,}; "
        f"{a.params_trainable:,} trainable), {human_macs(a.macs)}MACs per image"
    )
    return text


def _kind_table(a: Anatomy) -> Any:
    from rich.table import Table

    table = Table(title="Parameters and compute by layer kind", title_justify="left")
    for header in ("kind", "params", "share", "MACs", "share"):
        table.add_column(header, justify="left" if header == "kind" else "right")
    macs = a.macs_by_kind
    for kind in KINDS:
        params = a.params_by_kind[kind]
        table.add_row(
            kind,
            human(params),
            _share(params, a.params_total),
            human_macs(macs[kind]),
            _share(macs[kind], a.macs),
        )
    table.add_row("total", human(a.params_total), "100%", human_macs(a.macs), "100%", style="bold")
    return table


def _memory_line(a: Anatomy) -> Any:
    from rich.text import Text

    return Text(
        f"Activations (float32, batch 1): {human_bytes(a.activation_bytes)} in total, "
        f"largest layer {a.peak_layer} {human_bytes(a.peak_bytes)}"
    )


def _stage_table(a: Anatomy) -> Any:
    from rich.table import Table

    table = Table(title="Activation memory by resolution", title_justify="left")
    for header in ("stage", "layers", "activations", "share", "", "MACs", "share"):
        table.add_column(header, justify="left" if header in ("stage", "") else "right")
    for stage in a.by_stage:
        table.add_row(
            stage.stage,
            str(stage.layers),
            human_bytes(stage.bytes),
            _share(stage.bytes, a.activation_bytes),
            bar(stage.bytes / a.activation_bytes if a.activation_bytes else 0),
            human_macs(stage.macs),
            _share(stage.macs, a.macs),
        )
    return table


LAYER_COLUMNS = ("name", "kind", "output_shape", "params", "macs", "activation_bytes")


def _shape_text(shape: Sequence[int | None]) -> str:
    return "x".join("?" if d is None else str(d) for d in shape)


def _layer_table(a: Anatomy) -> Any:
    from rich.table import Table

    table = Table(title="Layers", title_justify="left")
    for header in ("name", "kind", "output shape", "params", "MACs", "activations"):
        table.add_column(header, justify="left" if header in ("name", "kind") else "right")
    for row in a.layers:
        table.add_row(
            row.name,
            row.kind,
            _shape_text(row.output_shape),
            human(row.params),
            human_macs(row.macs) if row.macs else "0",
            human_bytes(row.activation_bytes),
        )
    return table


def rows(anatomy: Anatomy) -> CsvRows:
    """Header and one row per layer with raw numbers, for `--format csv` and spreadsheets."""
    return list(LAYER_COLUMNS), [
        [r.name, r.kind, _shape_text(r.output_shape), r.params, r.macs, r.activation_bytes]
        for r in anatomy.layers
    ]
