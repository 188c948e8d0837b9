"""The privacy audit's section of ``report.md`` (``PrivacyEvaluator.report_section``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from htd_core.interfaces.evaluator import ReportContext, markdown_table

INTRO = (
    "Fraction of synthetic images closer to a real training image (or crop) than the "
    "calibration quantile of real-vs-real distances; about the quantile itself means no "
    "more copying than new real tissue; 'masked' leaves the conditioning crops out."
)
HEADER = (
    "synthetic set", "space", "level", "threshold", "quantile", "fraction below",
    "fraction below (masked)", "median distance",
)  # fmt: skip


def privacy_section(results: Mapping[str, Mapping[str, Any]], context: ReportContext) -> str:
    """Table of fractions below threshold per set, space and level, then per set its
    calibration, figures (from the set's ``output_dir``) and notes."""
    lines = ["## Privacy audit", "", INTRO, ""]
    rows = []
    for name, m in results.items():
        for space in ("feature", "pixel"):
            for level, r in m[space].items():
                masked = r["masked"]["fraction_below"] if r["masked"] else None
                rows.append([
                    name, space, level, r["threshold"], m["quantile"],
                    r["unmasked"]["fraction_below"], masked, r["unmasked"]["summary"]["median"],
                ])  # fmt: skip
    lines.append(markdown_table(HEADER, rows))
    for name, m in results.items():
        lines += [f"Calibration ({name}): {m['calibration']}; encoder {m['encoder']}.", ""]
        folder = context.output_dirs.get(name)
        for key, caption in (("top_pairs", "closest pairs"), ("distances", "distances")):
            if folder is not None and key in m.get("figures", {}):
                lines += [f"![{name} {caption}]({context.link(folder / m['figures'][key])})", ""]
        lines += [f"- {n}" for n in m.get("notes", [])] + ([""] if m.get("notes") else [])
    return "\n".join(lines)
