"""FD and layout adherence against the denoiser's training steps, one panel row per run.

The arms given must differ only in their steps (``fit: {steps: N}``): in one ``htd
experiment`` run each continues the shorter one's model (docs/results.md, "Ablation arms"),
so the curve is one training trajectory per seed, read at several steps. Each point is the
mean over the run's seeds with its 95 % interval, as the run's tables
(``htd_plugins.experiment.steps_curve``); dashed lines are the run's real-data references: FD
of real training against held-out patches (same N as the arms' sets), and the layout
adherence ceiling (the real-data network on held-out patches). It prints, as a markdown table,
each step count against the one before, paired by seed and resample (95 %).

    python examples/steps_curve_figure.py runs/glas-ae-ablation runs/wsss4luad-ae-ablation \
        --arms crop_400 crop crop_1600 crop_2400 --out docs/images/steps-curve.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="experiment run folders (their results.json)")
    parser.add_argument("--arms", nargs="+", required=True, help="arms differing in steps only")
    parser.add_argument("--out", required=True, help="the PNG to write")
    args = parser.parse_args()
    from htd_core import InputError
    from htd_plugins.experiment import steps_curve, steps_curve_lines

    curves = {}
    for run in args.runs:
        path = Path(run) / "results.json"
        if not path.is_file():
            print(f"{run}: no results.json: give an htd experiment run folder", file=sys.stderr)
            return 2
        results = json.loads(path.read_text())
        missing = [a for a in args.arms if a not in results["arms"]]
        if missing or "layout_adherence" not in results["scores"]:
            what = f"arms {missing}" if missing else "the layout_adherence evaluator"
            print(f"{run}: the run has not {what}; it has arms {list(results['arms'])}",
                  file=sys.stderr)  # fmt: skip
            return 2
        try:
            curves[results["name"]] = steps_curve(results, args.arms)
        except InputError as err:  # an arm named twice, arms with the same steps
            print(f"{run}: {err}", file=sys.stderr)
            return 2

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from htd_core.io import atomic_open

    fig, axes = plt.subplots(len(curves), 2, figsize=(9, 3.2 * len(curves)), squeeze=False)
    for (name, c), (ax_fd, ax_adh) in zip(curves.items(), axes, strict=True):
        steps = [p["steps"] for p in c["points"]]
        for i, (enc, label) in enumerate(c["encoders"].items()):  # the encoders the run used
            colour = f"C{i}"
            _points(ax_fd, steps, [p["fd"].get(enc) for p in c["points"]], colour,
                    f"FD {label}")  # fmt: skip
            if c["fd_real"].get(enc) is not None:
                ax_fd.axhline(c["fd_real"][enc], color=colour, ls="--", lw=1,
                              label=f"real vs real ({label})")  # fmt: skip
        ax_fd.set(title=f"{name}: Frechet distance (lower is better)", xlabel="denoiser steps")
        _points(ax_adh, steps, [p["adherence"] for p in c["points"]], "tab:green", "adherence mIoU")
        if c["ceiling"] is not None:
            ax_adh.axhline(
                c["ceiling"], color="tab:green", ls="--", lw=1, label="real-data ceiling"
            )
        ax_adh.set(title=f"{name}: layout adherence (higher is better)", xlabel="denoiser steps")
        for ax in (ax_fd, ax_adh):
            ax.set_xticks(steps)
            ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_open(args.out) as fh:
        fig.savefig(fh, format="png", dpi=110)
    print("\n".join(steps_curve_lines(curves)))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _points(ax, steps: list[int], ests: list, colour: str, label: str) -> None:
    """One line of means with their intervals (an arm without the score is left out)."""
    kept = [
        (x, e) for x, e in zip(steps, ests, strict=True) if e is not None and e.mean is not None
    ]
    if not kept:
        return
    steps, ests = [x for x, _ in kept], [e for _, e in kept]
    means = [e.mean for e in ests]
    lo = [e.mean - e.ci[0] if e.ci else 0.0 for e in ests]
    hi = [e.ci[1] - e.mean if e.ci else 0.0 for e in ests]
    ax.errorbar(steps, means, yerr=[lo, hi], color=colour, marker="o", capsize=3, label=label)


if __name__ == "__main__":
    sys.exit(main())
