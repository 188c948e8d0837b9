"""The synthetic set's size: one arm's DeepLabv3+ scores across runs that differ only in
``budget_options.n_synthetic`` (the practical use of synthesis: more training data than one
has).

Runs of one experiment file at several ``n_synthetic`` (a larger set grows the smaller one, so
a later run's set holds the earlier one's) share the data, the seeds, the held-out patches and
their bootstrap resamples, and the real-data network: the scores of two runs are paired by seed
and resample like two arms of one run (:mod:`.summary`). Differences are read against the first
run given.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from htd_core.errors import InputError
from htd_plugins.experiment import summary as sm
from htd_plugins.experiment.ablation import BASE
from htd_plugins.experiment.tables import est_cell, verdict_cell

#: DeepLabv3+ settings read, in table order.
SETTINGS = ("synthetic", "real+synthetic")


def set_size_rows(runs: Mapping[str, Mapping[str, Any]], arm: str = BASE) -> list[dict[str, Any]]:
    """One row per run (in the order given) of ``arm``'s DeepLabv3+ scores.

    Args:
        runs: run name (e.g. its folder) -> its ``results.json``, each with the
            ``deeplabv3plus`` evaluator's ``real``, ``synthetic`` and/or ``real+synthetic``
            settings for ``arm``.
        arm: the arm compared (default: ``crop``).

    Returns:
        ``[{"run", "n_synthetic", "n_real", "real", "synthetic", "real+synthetic", "gain",
        "vs_first"}]``: the distinct sizes over the seeds, sorted (synthetic patches
        generated; real training patches), each setting's mIoU as an
        :class:`.summary.Estimate` (mean over seeds [95 %]; None where not run), ``gain`` =
        real + synthetic - real (None without real + synthetic), and ``vs_first`` =
        ``{setting: this run - the first run}``, all paired by seed and resample.

    Raises:
        InputError: a run without ``arm``'s DeepLabv3+ scores or without their ``real``
            setting, or runs whose real-data network scored differently at a seed they share
            (other data, split, seed or evaluator budget: not one experiment at several set
            sizes).
    """
    per_run = {}
    for name, results in runs.items():
        per_seed = results.get("scores", {}).get("deeplabv3plus", {}).get(arm)
        if not per_seed:
            raise InputError(f"{name}: no deeplabv3plus scores of arm {arm!r}: give runs "
                             "whose arms and evaluators include it and deeplabv3plus")  # fmt: skip
        if not all("real" in m.get("settings", {}) for m in per_seed.values()):
            raise InputError(f"{name}: its DeepLabv3+ scores have no real setting: give runs "
                             "whose deeplabv3plus settings include real")  # fmt: skip
        per_run[name] = per_seed
    first_name, first = next(iter(per_run.items()))
    real = {s: sm.read(sm.iou("real").point, m) for s, m in first.items()}
    for name, per_seed in per_run.items():
        mine = {s: sm.read(sm.iou("real").point, m) for s, m in per_seed.items()}
        if any(mine[s] != real[s] for s in mine if s in real):
            raise InputError(f"{name}: its real-data DeepLabv3+ scores differ from "
                             f"{first_name}'s: give runs of one experiment that differ only in "
                             "budget_options.n_synthetic")  # fmt: skip
    rows = []
    for name, per_seed in per_run.items():
        generated = runs[name].get("generated", {}).get(arm, {})
        row = {"run": name,
               "n_synthetic": sorted({int(g["n"]) for g in generated.values()}),
               "n_real": sorted({int(m["settings"]["real"]["n_train"])
                                 for m in per_seed.values()})}  # fmt: skip
        for setting in ("real", *SETTINGS):
            ran = all(setting in m.get("settings", {}) for m in per_seed.values())
            row[setting] = sm.estimate(per_seed, sm.iou(setting)) if ran else None
        row["gain"] = (sm.difference(per_seed, per_seed, sm.iou("real+synthetic"),
                                     metric_b=sm.iou("real"))
                       if row["real+synthetic"] is not None else None)  # fmt: skip
        row["vs_first"] = {s: sm.difference(per_seed, first, sm.iou(s))
                           for s in SETTINGS if row[s] is not None
                           and all(s in m.get("settings", {}) for m in first.values())}  # fmt: skip
        rows.append(row)
    return rows


def set_size_lines(rows: list[dict[str, Any]], dataset: str) -> list[str]:
    """Markdown rows for :func:`set_size_rows` (header first): set size as a multiple of the
    real training set, each setting's mIoU, the gain of real + synthetic over real (better /
    worse / tie), and each setting against the first run."""
    head = ["dataset", "synthetic patches (x real)", "DeepLabv3+ real", "synthetic",
            "real + synthetic", "real + synthetic - real", "synthetic vs first",
            "real + synthetic vs first"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for row in rows:
        n, real = row["n_synthetic"], row["n_real"]
        ratio = f" ({n[0] / real[0]:.3g}x)" if len(n) == 1 and len(real) == 1 else ""
        size = "/".join(map(str, n)) + ratio
        cells = [est_cell(row[s], 3) if row[s] is not None else "-" for s in ("real", *SETTINGS)]
        gain = row["gain"]
        cells.append(verdict_cell(gain, 3, gain and sm.verdict(gain, lower=0.0)))
        for s in SETTINGS:
            d = row["vs_first"].get(s)
            cells.append(
                "-" if row is rows[0] else verdict_cell(d, 3, d and sm.verdict(d, lower=0.0))
            )
        lines.append(f"| {dataset} | {size} | " + " | ".join(cells) + " |")
    return lines
