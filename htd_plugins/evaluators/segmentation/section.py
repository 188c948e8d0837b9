"""The report sections of the segmentation evaluators: ``deeplabv3plus`` (downstream
segmentation) and ``layout_adherence``."""

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
        f"{b['batch_size']}, {b['input_size']} px; each real + synthetic batch is the real "
        "row's batch, same patches, plus as many synthetic ones); tested on "
        f"{first['n_test']} held-out real "
        f"images from {first['n_test_sources']} source images. IoU = TP / (TP + FP + FN) and "
        "Dice = 2 TP / (2 TP + FP + FN) per class from one confusion matrix accumulated over all "
        "test pixels (ignored pixels left out); means over the classes present in the test "
        f"labels; 95 % intervals from {first.get('n_bootstrap', 0)} bootstrap resamples of the "
        "held-out images (the same resamples for every setting and set, so gaps are paired). "
        f"Chance mean IoU: {format_value(first['chance_mean_iou'])}.",
        "",
    ]
    header = [
        "synthetic set", "trained on", "mean IoU", "95 % interval", "mean Dice",
        *[f"IoU {c}" for c in classes], *[f"Dice {c}" for c in classes],
        "pixel acc.", "n train", "gap vs real", "gap 95 % interval",
    ]  # fmt: skip
    rows = []
    for name, m in results.items():
        for setting, r in m["settings"].items():
            rows.append([
                name, setting, r["mean_iou"], _interval(r.get("mean_iou_ci")), r["mean_dice"],
                *[r["iou"][c] for c in classes], *[r["dice"][c] for c in classes],
                r.get("pixel_accuracy"), r["n_train"], m.get(f"gap_{setting}_vs_real"),
                _interval(m.get(f"gap_{setting}_vs_real_ci")),
            ])  # fmt: skip
    lines.append(markdown_table(header, rows))
    low = [
        f"`{name}` / {setting} ({format_value(r['mean_iou'])})"
        for name, m in results.items()
        for setting, r in m["settings"].items()
        if at_or_below_chance(r.get("mean_iou"), m.get("chance_mean_iou"))
    ]
    if low:
        lines += [
            f"**At or below chance** (mean IoU {format_value(first['chance_mean_iou'])}): "
            f"{', '.join(low)}. Such a network segments no better than class maps drawn from "
            "the class frequencies, so its row and the gaps that use it say nothing about the "
            "synthetic data: raise the training budget (`-o deeplabv3plus.budget=...`) or give "
            "more images.",
            "",
        ]
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


def adherence_section(results: Mapping[str, Mapping[str, Any]], context: ReportContext) -> str:
    """Per synthetic set, a table: adherence (the real-trained network's mean IoU on the
    synthetic images against their layouts), ceiling (on held-out real images), their ratio
    and chance, each with its 95 % bootstrap interval and per-class IoU."""
    first = next(iter(results.values()))
    classes, b = first["classes"], first["budget"]
    lines = [
        "## Layout adherence",
        "",
        f"A DeepLabv3+ trained on the {first['n_train']} real training images only "
        f"({b['encoder']}, {b['steps']} steps, batch {b['batch_size']}, {b['input_size']} px; "
        "the network of the downstream test's `real` row) segments each synthetic image. "
        "Adherence: its mean IoU against the mask the image was generated from; ceiling: its "
        "mean IoU on the held-out real images; ratio = adherence / ceiling (1: layouts as "
        "legible as real tissue); chance: class maps drawn per pixel from the real class "
        "frequencies, against the synthetic masks (what an image that ignores its layout "
        f"scores, about). 95 % intervals from {first.get('n_bootstrap', 0)} bootstrap "
        "resamples (synthetic images for adherence, held-out images for the ceiling).",
        "",
    ]
    header = ["", "mean IoU", "95 % interval", "n images", *[f"IoU {c}" for c in classes]]
    for name, m in results.items():
        adherence, ceiling = m["adherence"], m["ceiling"]
        rows = [
            ["adherence", adherence["mean_iou"], _interval(adherence.get("mean_iou_ci")),
             adherence["n"], *[adherence["iou"][c] for c in classes]],
            ["ceiling", ceiling["mean_iou"], _interval(ceiling.get("mean_iou_ci")),
             ceiling["n"], *[ceiling["iou"][c] for c in classes]],
            ["ratio", m["ratio"], _interval(m.get("ratio_ci")), None, *[None for _ in classes]],
            ["chance", m["chance_mean_iou"], None, adherence["n"], *[None for _ in classes]],
        ]  # fmt: skip
        lines += [f"`{name}`:", "", markdown_table(header, rows)]
        low = [
            part for part, value in (("adherence", adherence["mean_iou"]),
                                     ("ceiling", ceiling["mean_iou"]))
            if at_or_below_chance(value, m.get("chance_mean_iou"))
        ]  # fmt: skip
        if low:
            lines += [
                f"**At or below chance** for `{name}`: {' and '.join(low)} "
                f"({format_value(m['chance_mean_iou'])} by chance). "
                + ("The real-trained network cannot read real layouts either, so adherence "
                   "measures nothing here." if "ceiling" in low else
                   "The synthetic images do not show their layouts to the network."),
                "",
            ]  # fmt: skip
    return "\n".join(lines)


def at_or_below_chance(value: Any, chance: Any) -> bool:
    """True when a mean IoU is known and does not exceed the chance mean IoU (the phrase of
    the experiment's verdicts: 'at or below chance')."""
    return value is not None and chance is not None and float(value) <= float(chance)


def _interval(ci: Any) -> str | None:
    """``[lo, hi]`` as a table cell (None: ``-``)."""
    if not ci or ci[0] is None:
        return None
    return f"[{format_value(ci[0], 3)}, {format_value(ci[1], 3)}]"
