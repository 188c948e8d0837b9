"""``report.md``, ``report.json``, ``report.png``, ``images.csv`` and ``answers.csv`` of a
reader study.

Per reader and pooled over all answers: accuracy with its exact 95% interval and the exact
binomial test against 50%, sensitivity and specificity for "synthetic", detection rate per
synthetic set, and the power statement (the smallest accuracy the answers could detect, a
warning below the answers needed to detect 65%); quality scores of real vs each synthetic set
(Mann-Whitney U); agreement between readers (Fleiss' kappa over the images every reader rated);
a per-image table and the reader comments (:mod:`.tables`). Files are written atomically.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from htd_core.errors import InputError
from htd_core.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from htd_plugins.reader_study import stats, tables
from htd_plugins.reader_study.db import SCHEMA_VERSION, StudyDB, now


def build_report(study: StudyDB) -> dict[str, Any]:
    """All numbers of the report as a JSON-ready dict."""
    answers = study.answers()
    if not answers:
        raise InputError(
            f"study {study.root} holds no answers yet: run htd reader-study serve and let "
            "readers answer first"
        )
    sets = study.sets()
    syn_sets = [s["name"] for s in sets if s["kind"] == "synthetic"]

    def summary(rows: list[Mapping[str, Any]]) -> dict[str, Any]:
        out = stats.accuracy_summary(rows)
        out["power"] = stats.power_summary(len(rows))
        out["detection_by_set"] = {
            name: stats.proportion(
                sum(r["call"] == "synthetic" for r in rows if r["set_name"] == name),
                sum(1 for r in rows if r["set_name"] == name),
            )
            for name in syn_sets
        }
        return out

    readers = sorted({a["reader_id"] for a in answers})
    per_reader = {r: summary([a for a in answers if a["reader_id"] == r]) for r in readers}
    quality = {}
    for s in sets:
        scores = [a["quality"] for a in answers if a["set_name"] == s["name"]]
        quality[s["name"]] = {
            "kind": s["kind"],
            "n": len(scores),
            "mean": sum(scores) / len(scores) if scores else None,
            "median": _median(scores),
            "counts": {str(q): scores.count(q) for q in range(1, 6)},
        }
    real_name = next(s["name"] for s in sets if s["kind"] == "real")
    real_q = [a["quality"] for a in answers if a["set_name"] == real_name]
    tests = {
        name: stats.mann_whitney(real_q, [a["quality"] for a in answers if a["set_name"] == name])
        for name in syn_sets
    }
    return {
        "schema_version": SCHEMA_VERSION,
        "generated_at": now(),
        "study": {"n_images": len(study.image_ids()), "sets": {s["name"]: s["kind"] for s in sets}},
        "readers": per_reader,
        "pooled": summary(answers),
        "quality": quality,
        "quality_tests": {"reference": real_name, "mann_whitney_u": tests},
        "agreement": stats.agreement(answers),
        "images": tables.per_image(study.images(), answers),
        "comments": tables.comments(answers),
    }


def _median(values: list[int]) -> float | None:
    if not values:
        return None
    v = sorted(values)
    mid = len(v) // 2
    return float(v[mid]) if len(v) % 2 else (v[mid - 1] + v[mid]) / 2


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _prop(p: Mapping[str, Any]) -> str:
    if not p["n"]:
        return "n/a"
    lo, hi = p["ci95"]
    return f"{p['k']}/{p['n']} = {_pct(p['estimate'])} [{_pct(lo)}, {_pct(hi)}]"


def _p(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def render_markdown(rep: Mapping[str, Any], study_name: str) -> str:
    """The report as Markdown text."""
    lines = [
        f"# Reader study report: {study_name}",
        "",
        f"{rep['study']['n_images']} images; sets: "
        + ", ".join(f"{k} ({v})" for k, v in rep["study"]["sets"].items())
        + f"; generated {rep['generated_at']}.",
        "",
        "Accuracy = share of correct real/synthetic calls, with its exact 95% Clopper-Pearson "
        "interval and the two-sided exact binomial test of accuracy = 50%. *Indistinguishable* "
        "= the interval includes 50%. Sensitivity = synthetic images called synthetic; "
        "specificity = real images called real.",
        "",
        "## Accuracy",
        "",
        "| reader | answers | accuracy [95% CI] | p (vs 50%) | sensitivity | specificity "
        "| indistinguishable | detectable accuracy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows = [*rep["readers"].items(), ("**pooled**", rep["pooled"])]
    for name, r in rows:
        lines.append(
            f"| {name} | {r['n_answers']} | {_prop(r['accuracy'])} | "
            f"{_p(r['accuracy']['p_value_vs_50'])} | {_prop(r['sensitivity'])} | "
            f"{_prop(r['specificity'])} | {_verdict(r)} | "
            f"{_pct(r['power']['min_detectable_accuracy'])} |"
        )
    lines += ["", "Pooled answers are not independent (same images, same readers): read the "
              "pooled interval as descriptive.", "", *power_lines(rows)]  # fmt: skip
    sets = list(rep["pooled"]["detection_by_set"])
    if len(sets) > 1:
        lines += ["## Detection rate per synthetic set", "", "| reader | " + " | ".join(sets) + " |",
                  "|---|" + "---|" * len(sets)]  # fmt: skip
        for name, r in rows:
            cells = " | ".join(_prop(r["detection_by_set"][s]) for s in sets)
            lines.append(f"| {name} | {cells} |")
        lines.append("")
    lines += ["## Quality scores (1-5)", "", "| set | answers | mean | median | 1 | 2 | 3 | 4 | 5 |",
              "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, q in rep["quality"].items():
        mean = "n/a" if q["mean"] is None else f"{q['mean']:.2f}"
        med = "n/a" if q["median"] is None else f"{q['median']:g}"
        counts = " | ".join(str(q["counts"][str(i)]) for i in range(1, 6))
        lines.append(f"| {name} ({q['kind']}) | {q['n']} | {mean} | {med} | {counts} |")
    ref = rep["quality_tests"]["reference"]
    lines += ["", f"Mann-Whitney U (two-sided, all answers), {ref} vs each synthetic set:", "",
              f"| set | n {ref} | n set | U ({ref}) | p |", "|---|---|---|---|---|"]  # fmt: skip
    for name, t in rep["quality_tests"]["mann_whitney_u"].items():
        u = "n/a" if t["u"] is None else f"{t['u']:g}"
        lines.append(f"| {name} | {t['n_x']} | {t['n_y']} | {u} | {_p(t['p_value'])} |")
    ag = rep["agreement"]
    kappa = "n/a" if ag["fleiss_kappa"] is None else f"{ag['fleiss_kappa']:.3f}"
    note = f" ({ag['note']})" if ag.get("note") else ""
    lines += ["", "## Agreement between readers", "",
              f"Fleiss' kappa of the real/synthetic calls: **{kappa}**{note}, over "
              f"{ag['n_images']} images rated by all {ag['n_readers']} readers.", ""]  # fmt: skip
    return "\n".join(lines + tables.markdown_sections(rep))


def _verdict(r: Mapping[str, Any]) -> str:
    if not r["indistinguishable"]:
        return "no"
    return "yes (**underpowered**)" if r["power"]["underpowered"] else "yes"


def power_lines(rows: list[tuple[str, Mapping[str, Any]]]) -> list[str]:
    """The power statement: what the detectable-accuracy column means, and a warning naming
    every reader (or the pool) whose answers are too few to support "indistinguishable"."""
    pw = rows[-1][1]["power"]
    lines = [
        f"*Detectable accuracy* = the smallest true accuracy that this many answers would find "
        f"distinguishable (95% interval above 50%) with {pw['power']:.0%} probability (exact "
        f"binomial power at alpha {pw['alpha']:g}; n/a: no outcome of so few answers can be "
        f"significant). Detecting a reader at {pw['target_accuracy']:.0%} accuracy needs at "
        f"least {pw['answers_needed']} answers.",
        "",
    ]
    short = [f"{name} ({r['n_answers']} answers)" for name, r in rows if r["power"]["underpowered"]]
    if short:
        lines += [
            f"**Warning: low power.** {', '.join(short)}: fewer than {pw['answers_needed']} "
            f"answers. Such a study misses most readers who are right "
            f"{pw['target_accuracy']:.0%} of the time, so *indistinguishable: yes* there means "
            "the study could not tell, not that the images cannot be told apart. Add images "
            "(`--n`) or readers' answers before drawing that conclusion.",
            "",
        ]
    return lines


def render_plot(rep: Mapping[str, Any]) -> bytes:
    """PNG: accuracy per reader with 95% intervals; quality histograms per set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [*rep["readers"].items(), ("pooled", rep["pooled"])]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, (name, r) in enumerate(rows):
        a = r["accuracy"]
        lo, hi = a["ci95"]
        color = "tab:gray" if name == "pooled" else "tab:blue"
        ax1.errorbar(i, a["estimate"], yerr=[[a["estimate"] - lo], [hi - a["estimate"]]],
                     fmt="o", color=color, capsize=5)  # fmt: skip
    ax1.axhline(0.5, color="tab:red", ls="--", lw=1, label="chance (50%)")
    ax1.set_xticks(range(len(rows)), [n for n, _ in rows], rotation=30, ha="right")
    ax1.set_xlim(-0.6, len(rows) - 0.4)
    ax1.set_ylim(0, 1.02)
    ax1.set_ylabel("accuracy (95% Clopper-Pearson CI)")
    ax1.set_title("Real vs synthetic: accuracy per reader")
    ax1.legend(loc="lower right")
    names = list(rep["quality"])
    width = 0.8 / max(1, len(names))
    for j, name in enumerate(names):
        q = rep["quality"][name]
        total = max(1, q["n"])
        ax2.bar([s + (j - (len(names) - 1) / 2) * width for s in range(1, 6)],
                [q["counts"][str(s)] / total for s in range(1, 6)], width=width,
                label=f"{name} (n={q['n']})")  # fmt: skip
    ax2.set_xticks(range(1, 6))
    ax2.set_xlabel("quality score")
    ax2.set_ylabel("share of answers")
    ax2.set_title("Quality scores per set")
    ax2.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def write_report(study: StudyDB) -> dict[str, Path]:
    """Write ``report.md``, ``report.json``, ``report.png``, ``images.csv`` (the per-image
    table) and ``answers.csv`` (every answer with its key and comment) into ``STUDY/report/``.

    The folder belongs to the study (htd made it); a rerun replaces the five files.

    Returns:
        ``md``, ``json``, ``png``, ``images_csv``, ``answers_csv`` -> the file written.
    """
    rep = build_report(study)
    out = study.root / "report"
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a folder: move it away and rerun")
    paths = {k: out / f"report.{k}" for k in ("md", "json", "png")}
    paths.update(images_csv=out / "images.csv", answers_csv=out / "answers.csv")
    out.mkdir(exist_ok=True)
    atomic_write_text(paths["md"], render_markdown(rep, study.root.name))
    atomic_write_json(paths["json"], rep)
    atomic_write_bytes(paths["png"], render_plot(rep))
    atomic_write_text(paths["images_csv"], tables.to_csv(rep["images"], tables.IMAGE_COLUMNS))
    atomic_write_text(paths["answers_csv"], tables.answers_csv(study.answers()))
    return paths
