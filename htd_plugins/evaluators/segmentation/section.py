"""The downstream segmentation section of ``report.md`` (``DeepLabV3PlusEvaluator``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from htd_core.interfaces.evaluator import ReportContext, format_value, markdown_table


def segmentation_section(results: Mapping[str, Mapping[str, Any]], context: ReportContext) -> str:
    """The training budget and test data, then IoU per class, mean IoU and Dice, N and the
    gap to training on real images, per synthetic set and training setting."""
    first = next(iter(results.values()))
    classes = first["classes"]
    b = first["budget"]
    lines = [
        "## Downstream segmentation (DeepLabv3+)",
        "",
        f"Same model, seed and budget per setting ({b['encoder']}, {b['steps']} steps, batch "
        f"{b['batch_size']}, {b['input_size']} px); tested on {first['n_test']} held-out real "
        f"images from {first['n_test_sources']} source images. Chance mean IoU: "
        f"{format_value(first['chance_mean_iou'])}.",
        "",
    ]
    header = [
        "synthetic set", "trained on", "mean IoU", *[f"IoU {c}" for c in classes],
        "mean Dice", "n train", "gap vs real",
    ]  # fmt: skip
    rows = []
    for name, m in results.items():
        for setting, r in m["settings"].items():
            gap = m.get(f"gap_{setting}_vs_real")
            rows.append([
                name, setting, r["mean_iou"], *[r["iou"][c] for c in classes],
                r["mean_dice"], r["n_train"], gap,
            ])  # fmt: skip
    lines.append(markdown_table(header, rows))
    return "\n".join(lines)
