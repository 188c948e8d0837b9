"""``metrics.json`` + ``report.md`` + PNG figures for one ``htd evaluate`` run.

Results are keyed ``results[evaluator][synthetic set name] = metrics``; the synthetic sets are
the condition types compared (e.g. ``dual``, ``unconditional``, ``embedding``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from htd_core.io import atomic_write_json, atomic_write_text
from htd_core.types import TissueSample
from htd_plugins.evaluators.figures import save_bar_chart, save_grid
from htd_plugins.evaluators.privacy_math import crop_region


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return lines + [""]


def example_rows(
    synthetic: Sequence[TissueSample],
    real: Sequence[TissueSample] | None = None,
    nearest: Sequence[int] | None = None,
    n: int = 4,
) -> list[dict[str, np.ndarray | None]]:
    """Grid rows ``map | crops | synthetic | nearest real`` for the first ``n`` samples.

    ``crops`` shows the synthetic image inside its conditioning crops (dimmed elsewhere; from
    ``meta["crop_provenance"]`` or ``meta["crop_boxes"]``);
    ``nearest real`` needs ``real`` and per-sample indices into it (the privacy audit's).
    """
    rows = []
    for i in range(min(n, len(synthetic))):
        s = synthetic[i]
        cm = s.class_map
        has_map = bool((s.mask != cm.ignore_index).any())
        region = crop_region(s.meta, s.mask.shape)
        crops = None
        if region is not None and s.image is not None:
            crops = np.where(region[..., None], s.image, s.image // 4 + 48).astype(np.uint8)
        near = None
        if real is not None and nearest is not None and i < len(nearest) and nearest[i] >= 0:
            near = real[int(nearest[i])].image
        rows.append(
            {
                "map": cm.colorize(s.mask) if has_map else None,
                "crops": crops,
                "synthetic": s.image,
                "nearest real": near,
            }
        )
    empty = [k for k in ("map", "crops", "nearest real") if all(r[k] is None for r in rows)]
    return [{k: v for k, v in r.items() if k not in empty} for r in rows]


def write_report(
    out: str | Path,
    results: Mapping[str, Mapping[str, Mapping[str, Any]]],
    *,
    inputs: Mapping[str, Any],
    real: Sequence[TissueSample],
    synthetic: Mapping[str, Sequence[TissueSample]],
    figure_dir: str = "figures",
    examples: int = 4,
) -> dict[str, Any]:
    """Write ``metrics.json``, ``report.md`` and figures under ``out``; returns the JSON."""
    out = Path(out)
    fig_dir = out / figure_dir
    fig_dir.mkdir(parents=True, exist_ok=True)
    doc = {"inputs": dict(inputs), "results": {k: dict(v) for k, v in results.items()}}
    lines = ["# htd evaluation report", ""]

    def where(path: Any, match: Any) -> str:
        return f"`{path}`" + (f" matching `{match}`" if match else "")

    lines += [
        f"- real: {where(inputs.get('real'), inputs.get('match_real'))} ({inputs.get('n_real')} images)"
    ]
    if inputs.get("real_test"):
        lines += [
            f"- held-out real: {where(inputs['real_test'], inputs.get('match_real'))} ({inputs.get('n_real_test')} images)"
        ]
    globs = inputs.get("match_synthetic") or {}
    lines += [
        f"- synthetic `{k}`: {where(v['path'], globs.get(k))} ({v['n']} images)"
        for k, v in inputs.get("synthetic", {}).items()
    ]
    lines.append("")

    # grid of examples per synthetic set
    rows, labels = [], []
    privacy = results.get("privacy", {})
    for name, seq in synthetic.items():
        nearest = privacy.get(name, {}).get("nearest_real")
        for i, row in enumerate(example_rows(seq, real, nearest, examples)):
            rows.append(row)
            labels.append(f"{name} #{i}")
    if rows:
        save_grid(
            fig_dir / "examples.png",
            rows,
            row_labels=labels,
            title="map | crops | synthetic | nearest real",
        )
        lines += ["## Examples", "", f"![examples]({figure_dir}/examples.png)", ""]

    if "frechet" in results:
        lines += _frechet_section(results["frechet"], fig_dir, figure_dir)
    if "deeplabv3plus" in results:
        lines += _deeplab_section(results["deeplabv3plus"])
    if privacy:
        lines += _privacy_section(privacy, figure_dir)
    others = [k for k in results if k not in ("frechet", "deeplabv3plus", "privacy")]
    for name in others:
        lines += [
            f"## {name}",
            "",
            "```json",
            json.dumps(results[name], indent=2)[:4000],
            "```",
            "",
        ]
    atomic_write_json(out / "metrics.json", doc)
    atomic_write_text(out / "report.md", "\n".join(lines))
    return doc


def _frechet_section(res: Mapping[str, Any], fig_dir: Path, figure_dir: str) -> list[str]:
    sets = list(res)
    encoders = list(dict.fromkeys(e for s in sets for e in res[s]["encoders"]))
    labels = {
        e: next(res[s]["encoders"][e]["label"] for s in sets if e in res[s]["encoders"])
        for e in encoders
    }
    lines = [
        "## Frechet distance",
        "",
        "Lower is closer to the real set. One column per synthetic set.",
        "",
    ]
    extra = [
        k
        for k in ("fd_inf", "kid")
        if any(k in res[s]["encoders"].get(e, {}) for s in sets for e in encoders)
    ]
    header = ["encoder", *[f"FD {s}" for s in sets], *[f"{k} {s}" for k in extra for s in sets]]
    rows = []
    for e in encoders:
        row = [labels[e]] + [res[s]["encoders"].get(e, {}).get("fd") for s in sets]
        row += [res[s]["encoders"].get(e, {}).get(k) for k in extra for s in sets]
        rows.append(row)
    lines += _table(header, rows)
    n = {s: next(iter(res[s]["encoders"].values())) for s in sets}
    lines += [
        "N real / synthetic: "
        + ", ".join(f"{s}: {n[s]['n_real']} / {n[s]['n_synthetic']}" for s in sets),
        "",
    ]
    values = {
        labels[e]: {s: res[s]["encoders"][e]["fd"] for s in sets if e in res[s]["encoders"]}
        for e in encoders
    }
    save_bar_chart(
        fig_dir / "fd.png",
        values,
        ylabel="Frechet distance",
        title="FD per encoder and synthetic set",
    )
    lines += [f"![FD per encoder]({figure_dir}/fd.png)", ""]
    warnings = list(dict.fromkeys(w for s in sets for w in res[s].get("warnings", [])))
    if warnings:
        lines += ["Notes:", ""] + [f"- {w}" for w in warnings] + [""]
    return lines


def _deeplab_section(res: Mapping[str, Any]) -> list[str]:
    lines = ["## Downstream segmentation (DeepLabv3+)", ""]
    first = next(iter(res.values()))
    classes = first["classes"]
    b = first["budget"]
    lines += [
        f"Same model, seed and budget per setting ({b['encoder']}, {b['steps']} steps, batch "
        f"{b['batch_size']}, {b['input_size']} px); tested on {first['n_test']} held-out real "
        f"images from {first['n_test_sources']} source images. Chance mean IoU: "
        f"{_fmt(first['chance_mean_iou'])}.",
        "",
    ]
    header = [
        "synthetic set",
        "trained on",
        "mean IoU",
        *[f"IoU {c}" for c in classes],
        "mean Dice",
        "n train",
        "gap vs real",
    ]
    rows = []
    for name, m in res.items():
        for setting, r in m["settings"].items():
            gap = m.get(f"gap_{setting}_vs_real")
            rows.append(
                [
                    name,
                    setting,
                    r["mean_iou"],
                    *[r["iou"][c] for c in classes],
                    r["mean_dice"],
                    r["n_train"],
                    gap,
                ]
            )
    return lines + _table(header, rows)


def _privacy_section(res: Mapping[str, Any], figure_dir: str) -> list[str]:
    lines = ["## Privacy audit", ""]
    lines += [
        "Fraction of synthetic images closer to a real training image (or crop) than the "
        "calibration quantile of real-vs-real distances; about the quantile itself means no "
        "more copying than new real tissue; 'masked' leaves the conditioning crops out.",
        "",
    ]
    rows = []
    for name, m in res.items():
        for space in ("feature", "pixel"):
            for level, r in m[space].items():
                masked = r["masked"]["fraction_below"] if r["masked"] else None
                rows.append(
                    [
                        name,
                        space,
                        level,
                        r["threshold"],
                        m["quantile"],
                        r["unmasked"]["fraction_below"],
                        masked,
                        r["unmasked"]["summary"]["median"],
                    ]
                )
    lines += _table(
        [
            "synthetic set",
            "space",
            "level",
            "threshold",
            "quantile",
            "fraction below",
            "fraction below (masked)",
            "median distance",
        ],
        rows,
    )
    for name, m in res.items():
        lines += [f"Calibration ({name}): {m['calibration']}; encoder {m['encoder']}.", ""]
        for key, caption in (("top_pairs", "closest pairs"), ("distances", "distances")):
            if key in m.get("figures", {}):
                lines += [
                    f"![{name} {caption}]({figure_dir}/privacy-{name}/{m['figures'][key]})",
                    "",
                ]
        lines += [f"- {n}" for n in m.get("notes", [])] + ([""] if m.get("notes") else [])
    return lines
