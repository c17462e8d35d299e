"""benchmarks/INT8.md from the measurements of benchmarks/int8.py (kept apart: text, no models)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

#: A family is "ok" for int8 when the quantized model keeps the float top-1 on at least this
#: share of the photo views, "warn" below it, "refuse" when it does not convert or gives NaN.
OK_AGREEMENT = 0.90

COMMAND = "python benchmarks/int8.py"


def markdown(
    rows: Sequence[dict[str, Any]],
    studies: dict[str, Any],
    machine: dict[str, object],
    seconds: float,
) -> str:
    parts = [
        "# int8 against float32 on the LiteRT engine",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, Python {machine['python']}. "
        f"Reproduce: `{COMMAND}` ({seconds / 60:.0f} min here). Speed figures are provisional: "
        "other engineers shared the 2 cores during the run (images/s on the wall clock suffer "
        "most; CPU ms per image on one thread much less); accuracy figures are not affected.",
        "",
        *families(rows),
        *real_hits(rows),
        *calibration(studies.get("sets")),
        *sample_counts(studies.get("samples")),
    ]
    return "\n".join(parts) + "\n"


def families(rows: Sequence[dict[str, Any]]) -> list[str]:
    lines = [
        "## (a)-(c) every family: conversion, fidelity to float32, speed",
        "",
        "Calibration: the 4 sample images, augmented to N=64 (`quantize.Recipe()`). Fidelity: "
        "the 13 photos of ../shared/photos and the 4 sample images (17; the sample images are "
        "also the calibration photos), then 8 mirrored/shifted/zoomed views of each (136). "
        "**weights** says which figures come from real ImageNet weights and which from seeded "
        "random weights (tests/conftest.py `seeded_model`, with the classifier's bias evening "
        "out the classes' mean scores so that the top-1 follows the photo): for seeded models, "
        "fidelity shows whether the quantized graph computes what the float graph does, not how "
        "a trained model's accuracy fares; *distinct* counts the different float32 top-1 classes "
        "over the 17 photos. *TV*: mean total-variation distance between the two probability "
        "vectors (0 equal, 1 disjoint). Speed: batch 16, model alone, both models in the same "
        "process, medians of interleaved rounds: images/s on 2 threads, and CPU ms per image on "
        "1 thread; the factor in brackets is int8's speed over float32's (above 1: int8 is "
        f"faster). Verdict: ok when the int8 top-1 equals float32's on at "
        f"least {OK_AGREEMENT:.0%} of the 136 views, warn below, refuse when the conversion fails "
        "or scores are NaN.",
        "",
        "| arch | weights | int8 converts | convert s fp32 / int8 | MB fp32 / int8 | distinct | "
        "top-1 agree (17) | top-1 agree (views) | top-5 overlap | max abs diff | mean abs diff | "
        "TV | img/s fp32 / int8 (2 threads) | CPU ms/img fp32 / int8 (1 thread) | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    return [*lines, *(family_row(row) for row in rows), ""]


def family_row(row: dict[str, Any]) -> str:
    if "int8_ips" not in row:
        where = f"{row['fp32_convert_s']:.1f} / -" if "fp32_convert_s" in row else "-"
        error = row.get("error", "no result").replace("|", "/")
        cells = [row["arch"], row.get("weights", "?"), f"no: {error}", where]
        return "| " + " | ".join(cells + ["-"] * 10 + ["refuse"]) + " |"
    ips, cpu = (row["fp32_ips"], row["int8_ips"]), (row["fp32_cpu_ms"], row["int8_cpu_ms"])
    cells = [
        row["arch"],
        row["weights"],
        "yes",
        f"{row['fp32_convert_s']:.1f} / {row['int8_convert_s']:.1f}",
        f"{row['fp32_mb']:.1f} / {row['int8_mb']:.1f}",
        str(row["distinct_top1"]),
        *agreement(row),
        f"{row['mean_abs_diff']:.1e}",
        f"{row['mean_tv']:.3f}",
        f"{ips[0]:.1f} / {ips[1]:.1f} ({ips[1] / ips[0]:.2f}x)",
        f"{cpu[0]:.1f} / {cpu[1]:.1f} ({cpu[0] / cpu[1]:.2f}x)",
        verdict(row),
    ]
    return "| " + " | ".join(cells) + " |"


def agreement(row: dict[str, Any]) -> list[str]:
    """Top-1 agreement on the photos and on their views, top-5 overlap, largest difference."""
    views = row["views_top1_agree"] / row["views"]
    return [
        f"{row['top1_agree']}/{row['images']}",
        f"{row['views_top1_agree']}/{row['views']} ({views:.0%})",
        f"{row['top5_overlap']:.0%}",
        f"{row['max_abs_diff']:.3f}",
    ]


def verdict(row: dict[str, Any]) -> str:
    if row["nan"]:
        return "refuse (NaN)"
    return "ok" if row["views_top1_agree"] >= OK_AGREEMENT * row["views"] else "warn"


def real_hits(rows: Sequence[dict[str, Any]]) -> list[str]:
    real = [row for row in rows if row.get("weights") == "real ImageNet" and "fp32_hits" in row]
    if not real:
        return []
    lines = [
        "## MobileNet-0.25 with its real ImageNet weights: labels on ../shared/photos",
        "",
        "Photos (of 13 in expected.json) whose top-1 / top-5 holds an accepted label.",
        "",
        "| arch | fp32 top-1 | int8 top-1 | fp32 top-5 | int8 top-5 |",
        "|---|---|---|---|---|",
    ]
    for row in real:
        fp32, int8 = row["fp32_hits"], row["int8_hits"]
        lines.append(
            f"| {row['arch']} | {fp32['top1']} | {int8['top1']} | {fp32['top5']} | {int8['top5']} |"
        )
    return [*lines, ""]


def study_section(
    study: Any, heading: str, intro: str, header: str, row: Callable[[dict[str, Any]], list[str]]
) -> list[str]:
    """One study's section: its heading and intro, then its table (`header` names the columns,
    `row` gives each row's cells), or the study's error; nothing for a study not run."""
    if study is None:
        return []
    lines = [heading, "", intro, ""]
    if isinstance(study, dict):
        return [*lines, f"The study failed: {study.get('error')}", ""]
    columns = header.count("|") - 1
    table = [header, "|---" * columns + "|", *("| " + " | ".join(row(r)) + " |" for r in study)]
    return [*lines, *table, ""]


def calibration(study: Any) -> list[str]:
    return study_section(
        study,
        "## Which calibration set: MobileNet-0.25, real ImageNet weights",
        "Each set calibrates one int8 conversion of the same model; columns as above, and the "
        "accepted-label hits on the 13 photos (float32: see the first row's fp32 columns). The "
        "(ii) sets calibrate on the photos they are evaluated on, so they are the best case "
        "for those photos, not a held-out figure.",
        "| calibration set | convert s | top-1 agree (17) | top-1 agree (views) | top-5 overlap | "
        "max abs diff | mean TV distance | top-1 hits fp32 / int8 | top-5 hits fp32 / int8 |",
        study_cells,
    )


def study_cells(row: dict[str, Any]) -> list[str]:
    fp32, int8 = row["fp32_hits"], row["int8_hits"]
    return [
        row["set"],
        f"{row['convert_s']:.1f}",
        *agreement(row),
        f"{row['mean_tv']:.3f}",
        f"{fp32['top1']} / {int8['top1']}",
        f"{fp32['top5']} / {int8['top5']}",
    ]


def sample_counts(study: Any) -> list[str]:
    return study_section(
        study,
        "## How many calibration samples: ResNet50, seeded weights",
        "The sample images as N calibration samples (N=4: each once; more: augmented); the "
        "conversion's CPU seconds (all threads) and the fidelity columns as above.",
        "| N | conversion CPU s | top-1 agree (17) | top-1 agree (views) | top-5 overlap | "
        "max abs diff | TV |",
        lambda row: [
            str(row["samples"]),
            f"{row['cpu_s']:.0f}",
            *agreement(row),
            f"{row['mean_tv']:.3f}",
        ],
    )
