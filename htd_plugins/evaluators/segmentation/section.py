"""The downstream segmentation section of ``report.md`` (``DeepLabV3PlusEvaluator``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from htd_core.interfaces.evaluator import ReportContext, format_value, markdown_table


def segmentation_section(results: Mapping[str, Mapping[str, Any]], context: ReportContext) -> str:
    """The training budget and test data, then per synthetic set and training setting: mean
    IoU and Dice, IoU and Dice per class (all from one confusion matrix over every test pixel),
    pixel accuracy, N and the gap to training on real images; the confusion matrices follow."""
    first = next(iter(results.values()))
    classes = first["classes"]
    b = first["budget"]
    lines = [
        "## Downstream segmentation (DeepLabv3+)",
        "",
        f"Same model, seed and budget per setting ({b['encoder']}, {b['steps']} steps, batch "
        f"{b['batch_size']}, {b['input_size']} px); tested on {first['n_test']} held-out real "
        f"images from {first['n_test_sources']} source images. IoU = TP / (TP + FP + FN) and "
        "Dice = 2 TP / (2 TP + FP + FN) per class from one confusion matrix accumulated over all "
        "test pixels (ignored pixels left out); means over the classes present in the test "
        f"labels. Chance mean IoU: {format_value(first['chance_mean_iou'])}.",
        "",
    ]
    header = [
        "synthetic set", "trained on", "mean IoU", "mean Dice",
        *[f"IoU {c}" for c in classes], *[f"Dice {c}" for c in classes],
        "pixel acc.", "n train", "gap vs real",
    ]  # fmt: skip
    rows = []
    for name, m in results.items():
        for setting, r in m["settings"].items():
            rows.append([
                name, setting, r["mean_iou"], r["mean_dice"],
                *[r["iou"][c] for c in classes], *[r["dice"][c] for c in classes],
                r.get("pixel_accuracy"), r["n_train"], m.get(f"gap_{setting}_vs_real"),
            ])  # fmt: skip
    lines.append(markdown_table(header, rows))
    overlaps = {name: m["overlap"] for name, m in results.items() if m.get("overlap")}
    for name, o in overlaps.items():
        lines += [
            f"**Leakage:** synthetic set `{name}` shares {len(o['sources'])} source image(s) "
            f"with the test images ({o['layout_rows']} samples from held-out layouts, "
            f"{o['crop_rows']} with held-out crops); trained on anyway (allow_overlap).",
            "",
        ]
    lines += ["Confusion matrices (pixels; rows: label, columns: prediction):", ""]
    for name, m in results.items():
        for setting, r in m["settings"].items():
            matrix = r.get("confusion")
            if not matrix:
                continue
            lines.append(f"`{name}` / {setting}:")
            lines.append("")
            body = [[label, *[matrix[label].get(c) for c in classes]] for label in classes]
            lines.append(markdown_table(["label \\ prediction", *classes], body))
    return "\n".join(lines)
