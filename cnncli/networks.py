"""What a command runs: a registry architecture with weights (`--arch`, `--weights`), or a model
`cnn train` wrote (`--model BUNDLE`).

Both are a `Network`: a registry-like record (input size, preprocessing, Grad-CAM layer), the
classes its outputs are (`Labels`: ImageNet's, or the bundle's own), the resize policy its
pictures are made with, its Keras model, and the identity of its content. The identity keys the
compiled-model cache (so a bundle's LiteRT conversion is found again without TensorFlow) and
tags every result (`name@identity`), so that `--resume` never mixes two models' results in one
file. Every command takes Networks, so a trained model goes wherever a registry model goes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

from cnncli import bundle, registry
from cnncli.cache import ModelCache
from cnncli.choices import Resize
from cnncli.env import Environment
from cnncli.errors import UsageError
from cnncli.labels import Labels, imagenet
from cnncli.loader import Weights

#: Weights as the command line names them (`imagenet`, `none`, a file's path), or parsed.
WeightsLike = str | os.PathLike | Weights
#: A bundle's folder.
BundleLike = str | os.PathLike


class Network(Protocol):
    """What every command needs of a model, whichever kind it is."""

    @property
    def record(self) -> registry.Arch: ...

    @property
    def labels(self) -> Labels: ...

    @property
    def resize(self) -> Resize:
        """The resize policy its pictures are made with unless the user chooses another."""
        ...

    @property
    def random(self) -> bool:
        """Whether its weights are random (`--weights none`): never cached, labels meaningless."""
        ...

    @property
    def weights(self) -> str:
        """Where its weights come from, as outputs name it."""
        ...

    def identity(self, cache: ModelCache) -> str:
        """What its weights are by content: `imagenet`, `none` or `sha256:<hex>`."""
        ...

    def keras_model(self) -> Any: ...

    def arguments(self) -> list[str]:
        """The `cnn` options that name it (for the processes `cnn bench` times)."""
        ...


@dataclass(frozen=True)
class RegistryNetwork:
    """A registry architecture with ImageNet, random or file weights."""

    record: registry.Arch
    source: Weights

    @property
    def labels(self) -> Labels:
        return imagenet()

    @property
    def resize(self) -> Resize:
        return Resize.crop

    @property
    def random(self) -> bool:
        return self.source.source == "none"

    @property
    def weights(self) -> str:
        return str(self.source)

    def identity(self, cache: ModelCache) -> str:
        if self.source.path is None:
            return self.source.source
        return f"sha256:{cache.file_hash(self.source.path)}"

    def keras_model(self) -> Any:
        from cnncli.loader import build

        return build(self.record, self.source)

    def arguments(self) -> list[str]:
        return ["-a", self.record.name, "-w", self.weights]


@dataclass(frozen=True)
class BundleNetwork:
    """A trained model's folder: its own classes, resize policy and Keras model."""

    bundle: bundle.Bundle

    @property
    def record(self) -> registry.Arch:
        return self.bundle.record

    @property
    def resize(self) -> Resize:
        return self.bundle.resize

    @property
    def random(self) -> bool:
        return False

    @cached_property
    def labels(self) -> Labels:
        return Labels.of_names(self.bundle.classes, self.bundle.name)

    @property
    def weights(self) -> str:
        return str(self.bundle.path)

    def identity(self, cache: ModelCache) -> str:
        """The content of its model and metadata, each file's hash remembered by the cache (so
        a warm run reads neither file whole)."""
        return f"sha256:{self.bundle.digest_with(cache.file_hash)}"

    def keras_model(self) -> Any:
        """The bundle's model, refused when its inputs or outputs are not its metadata's
        (input size, classes): it would fail on, or mislabel, every picture."""
        model = self.bundle.model()
        outputs, classes = int(model.output_shape[-1]), len(self.labels)
        if outputs != classes:
            raise UsageError(
                f"{self.bundle.path}: its model has {outputs} outputs but its metadata names "
                f"{classes} classes; train it again"
            )
        size, shape = self.record.input_size, tuple(model.input_shape[1:3])
        if shape != (size, size):
            raise UsageError(
                f"{self.bundle.path}: its model takes {shape[0]}x{shape[1]} pictures but its "
                f"metadata says {size}x{size}; train it again"
            )
        return model

    def arguments(self) -> list[str]:
        return ["--model", self.weights]


def tag(network: Network, identity: str) -> str:
    """How results name the model that wrote them, from its `identity`: `resnet50@imagenet`,
    `birds@sha256:1f2e...` (16 hex digits: short enough to compare by eye, long enough that no
    two models share them)."""
    return f"{network.record.name}@{identity[:23]}"


def named(
    arch: str | None = None,
    weights: WeightsLike | None = None,
    model: BundleLike | None = None,
) -> Network:
    """The network `--arch/--weights` or `--model` names (resnet50 with ImageNet weights when
    neither is given); naming both is a usage error."""
    if model is None:
        return RegistryNetwork(registry.get(arch or registry.DEFAULT_ARCH), parse_weights(weights))
    if arch is not None or weights is not None:
        given = " and ".join(o for o, v in (("--arch", arch), ("--weights", weights)) if v)
        raise UsageError(f"--model {model} is a whole trained model: drop {given}")
    return BundleNetwork(bundle.load(model))


def several(
    archs: Sequence[str] | None,
    weights: WeightsLike | Sequence[WeightsLike] | None,
    models: Sequence[BundleLike] = (),
    default: Sequence[str] = registry.COMPARED,
) -> list[Network]:
    """The networks of `compare` and `bench`: the architectures (with one weights source for
    all, or one each), then the trained models. Without `--arch`, `default` when no model is
    given, else the models alone."""
    if archs is None:
        if models and weights is not None:
            raise UsageError("--weights goes with --arch: a trained model has its own weights")
        archs = () if models else default
    records = [registry.get(name) for name in archs]
    pairs = paired(records, weights)
    return [*(RegistryNetwork(r, w) for r, w in pairs), *(named(model=m) for m in models)]


#: What `cnn train` starts from: an architecture with weights, or a bundle to train further.
Trainable = RegistryNetwork | BundleNetwork


def to_train(
    archs: Sequence[str], weights: WeightsLike | Sequence[WeightsLike] | None
) -> list[Trainable]:
    """What `cnn train --arch` names: registry architectures, each with its weights as `paired`
    gives them, and folders `cnn train` wrote (an item that is no architecture's name), whose
    training goes on. A folder has its own weights, so `--weights` beside one is refused."""
    folders = {name for name in archs if _is_folder(name)}
    if folders and weights is not None:
        raise UsageError(
            f"--weights goes with architectures, not with --arch {sorted(folders)[0]}, a "
            "trained model with its own weights: drop --weights"
        )
    pairs = iter(paired([registry.get(name) for name in archs if name not in folders], weights))
    return [
        BundleNetwork(bundle.load(name, "--arch"))
        if name in folders
        else RegistryNetwork(*next(pairs))
        for name in archs
    ]


def _is_folder(name: str) -> bool:
    """Whether an `--arch` item names a folder: a path that is no architecture's name (a folder
    named like one is `./resnet50`)."""
    try:
        registry.get(name)
    except UsageError:
        return os.path.isdir(name) or os.sep in name
    return False


def paired(
    records: Sequence[registry.Arch], weights: WeightsLike | Sequence[WeightsLike] | None
) -> list[tuple[registry.Arch, Weights]]:
    """Each record with its weights: one source for all, or one per record (`compare`, `bench`
    and `train` take `--weights` alike)."""
    if not records:
        return []
    single = weights is None or isinstance(weights, str | os.PathLike | Weights)
    sources = [parse_weights(weights)] if single else [parse_weights(w) for w in weights]  # type: ignore[union-attr]
    if len(sources) not in (1, len(records)):
        raise UsageError(
            f"--weights gives {len(sources)} sources for {len(records)} archs: "
            "give one for all or one per arch"
        )
    return list(zip(records, sources * len(records) if len(sources) == 1 else sources, strict=True))


def parse_weights(weights: WeightsLike | None) -> Weights:
    """Weights as given (ImageNet's when not given)."""
    if isinstance(weights, Weights):
        return weights
    return Weights.parse(os.fspath(weights) if weights is not None else "imagenet")


def resize_for(network: Network, chosen: Resize | None, env: Environment) -> Resize:
    """The resize policy for `network`'s pictures: the user's, else the network's own. A
    trained model given pictures made otherwise than at training sees them unlike anything it
    learnt from: said once, as a warning."""
    if chosen is None:
        return network.resize
    if isinstance(network, BundleNetwork) and chosen is not network.resize:
        env.warn(
            f"{network.record.name} was trained on --resize {network.resize.value} pictures; "
            f"--resize {chosen.value} shows it pictures unlike its training's"
        )
    return chosen


def warn_if_random(env: Environment, networks: Sequence[Network]) -> None:
    """`--weights none` gives labels as confident-looking as trained ones: say once that they
    mean nothing."""
    names = [network.record.name for network in networks if network.random]
    if names:
        env.warn(f"{', '.join(names)}: random weights (--weights none), the labels are meaningless")
