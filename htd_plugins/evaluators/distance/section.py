"""The Frechet distance section of ``report.md`` (``FrechetEvaluator.report_section``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from htd_core.interfaces.evaluator import ReportContext, markdown_table

FIGURE = "fd.png"


def frechet_section(results: Mapping[str, Mapping[str, Any]], context: ReportContext) -> str:
    """FD per encoder (rows) and synthetic set (columns), FD-infinity and KID when computed,
    N per set, a bar chart ``fd.png`` in ``context.figure_dir`` and the evaluator's notes."""
    from htd_plugins.evaluators.reporting.figures import save_bar_chart

    res = results
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
    lines.append(markdown_table(header, rows))
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
    chart = save_bar_chart(
        context.figure_dir / FIGURE,
        values,
        ylabel="Frechet distance",
        title="FD per encoder and synthetic set",
    )
    lines += [f"![FD per encoder]({context.link(chart)})", ""]
    warnings = list(dict.fromkeys(w for s in sets for w in res[s].get("warnings", [])))
    if warnings:
        lines += ["Notes:", ""] + [f"- {w}" for w in warnings] + [""]
    return "\n".join(lines)
