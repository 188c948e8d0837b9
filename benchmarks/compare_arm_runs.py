"""One arm of two experiment runs side by side: did a change of the arm move its scores?

Reads the ``scores`` of both runs' ``results.json`` (the same data, test split and seeds, so
their bootstrap resamples pair up as the arms of one run do) and prints, per score, each run's
mean over seeds and the paired difference B - A with the experiment's 95 % interval (:mod:`htd_plugins.experiment.summary`: seeds and resamples pooled),
read as "moved" (the interval excludes 0) or "tie" (it does not). Written for issue "Synthetic
tissue good enough to train on", item 6: the embedding arm of whole bank crops (B) against the
placed squares it embedded before (A) must not move beyond its interval.

    python benchmarks/compare_arm_runs.py runs/wsss4luad-cpu runs/wsss4luad-cpu-whole \\
        --arm embedding [--against crop]

``--against``: also print B's arm minus that arm of run A (e.g. the crop arm both runs share).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def load(run: Path, arm: str) -> dict[str, dict[str, dict]]:
    """``{evaluator: {seed: metrics}}`` of ``arm`` in ``run``'s ``results.json`` (its
    ``scores``, as the run's tables read them)."""
    path = run / "results.json"
    if not path.is_file():
        raise SystemExit(f"compare_arm_runs: {path} not found: give an experiment run's folder")
    scores = json.loads(path.read_text()).get("scores", {})
    out = {ev: per_arm[arm] for ev, per_arm in scores.items() if arm in per_arm}
    if not out:
        raise SystemExit(f"compare_arm_runs: {run} has no results of arm {arm!r}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path, help="run folder A (before)")
    parser.add_argument("b", type=Path, help="run folder B (after)")
    parser.add_argument("--arm", required=True)
    parser.add_argument("--against", help="an arm of run A to set B's arm against as well")
    args = parser.parse_args()

    from htd_plugins.experiment import summary as sm
    from htd_plugins.experiment.tables import est_cell

    a, b = load(args.a, args.arm), load(args.b, args.arm)
    other = load(args.a, args.against) if args.against else None
    metrics = []
    encoders = next(iter(a.get("frechet", {}).values()), {}).get("encoders", {})
    for key in sorted(encoders):
        metrics += [("frechet", sm.fd(key, key)), ("frechet", sm.kid(key, key))]
    metrics += [("deeplabv3plus", sm.iou(s)) for s in ("synthetic", "real+synthetic")]
    metrics += [("layout_adherence", sm.adherence())]
    head = f"| score | A: {args.arm} | B: {args.arm} | B - A [95 %] | reading |"
    if other is not None:
        head += f" B - A's {args.against} [95 %] |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for evaluator, metric in metrics:
        if evaluator not in a or evaluator not in b:
            continue
        ea, eb = sm.estimate(a[evaluator], metric), sm.estimate(b[evaluator], metric)
        diff = sm.difference(b[evaluator], a[evaluator], metric)
        moved = sm.verdict(diff, upper=0.0) in ("holds", "does not hold")  # 0 outside
        digits = 2 if "FD" in metric.label else 4
        row = (f"| {metric.label} | {est_cell(ea, digits)} | {est_cell(eb, digits)} | "
               f"{est_cell(diff, digits, signed=True)} | {'moved' if moved else 'tie'} |")  # fmt: skip
        if other is not None and evaluator in other:
            against = sm.difference(b[evaluator], other[evaluator], metric)
            row += f" {est_cell(against, digits, signed=True)} |"
        print(row)


if __name__ == "__main__":
    main()
