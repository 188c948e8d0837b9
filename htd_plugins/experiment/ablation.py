"""Ablation arms read against the method: every arm that is not one of the paper's four
(unconditional, map only, map + embedding, map + crop) compared with ``crop`` on each reading
of the experiment, paired by seed and resample (:mod:`.summary`).

For each ablation arm ``a`` and reading, the difference ``a - crop`` with its 95 % interval and
the verdict of "``a`` is better than map + crop": **holds** when the interval lies on the
better side (lower FD / KID; higher mIoU and adherence), **does not hold** when it lies on the
worse side, **tie** when it straddles 0. Ablation arms are, for example, ``concat_ldm``
(concatenation instead of ControlNet injection), ``crop_v_prediction``, ``crop_min_snr``, a
longer-trained crop arm (an arm's own ``fit: {steps: N}``) or ``collage`` (no model).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from htd_core.errors import InputError
from htd_plugins.experiment import summary as sm
from htd_plugins.experiment.claims import encoders
from htd_plugins.experiment.config import DEFAULT_ARMS as PAPER_ARMS  # compared by .claims
from htd_plugins.experiment.tables import verdict_cell

#: The method every ablation arm is read against.
BASE = "crop"


def _reading(name: str, est: sm.Estimate, lower_is_better: bool) -> dict[str, Any]:
    verdict = sm.verdict(est, upper=0.0) if lower_is_better else sm.verdict(est, lower=0.0)
    return {"reading": name, "verdict": verdict, "difference": est.to_dict(),
            "better": "lower" if lower_is_better else "higher"}  # fmt: skip


def ablation(scores: Mapping[str, Any], arms: list[str]) -> list[dict[str, Any]]:
    """``[{"arm", "readings": [{"reading", "verdict", "difference", "better"}]}]`` for each
    ablation arm in ``arms`` (in their order) when ``crop`` ran too; empty otherwise.

    Readings (those the run measured): FD and KID under each encoder; DeepLabv3+ mIoU trained
    on the arm's synthetic patches, and on real + synthetic; layout adherence mIoU.
    """
    if BASE not in arms:
        return []
    out = []
    frechet = scores.get("frechet", {})
    seg = scores.get("deeplabv3plus", {})
    adh = scores.get("layout_adherence", {})
    for arm in [a for a in arms if a not in PAPER_ARMS]:
        readings = []
        if arm in frechet and BASE in frechet:
            for key, label in encoders(scores).items():
                for metric in (sm.fd(key, label), sm.kid(key, label)):
                    d = sm.difference(frechet[arm], frechet[BASE], metric)
                    readings.append(_reading(metric.label, d, lower_is_better=True))
        if arm in seg and BASE in seg:
            for setting in ("synthetic", "real+synthetic"):
                if _has_setting(seg[arm], setting) and _has_setting(seg[BASE], setting):
                    d = sm.difference(seg[arm], seg[BASE], sm.iou(setting))
                    readings.append(_reading(f"DeepLabv3+ mIoU, {setting}", d, False))
        if arm in adh and BASE in adh:
            d = sm.difference(adh[arm], adh[BASE], sm.adherence())
            readings.append(_reading("layout adherence mIoU", d, lower_is_better=False))
        if readings:
            out.append({"arm": arm, "readings": readings})
    return out


def _has_setting(per_seed: Mapping[Any, Any], setting: str) -> bool:
    return any(setting in m.get("settings", {}) for m in per_seed.values())


def ablation_lines(items: list[dict[str, Any]], labels: Mapping[str, str]) -> list[str]:
    """The report's section: one row per ablation arm, one column per reading, each cell
    ``difference [95 %] verdict`` (difference = ablation arm - map + crop)."""
    if not items:
        return []
    columns: list[str] = []
    for item in items:
        columns += [r["reading"] for r in item["readings"] if r["reading"] not in columns]
    lines = ["## Ablation arms against map + crop", "",
             "Each cell: ablation arm - map + crop, paired by seed and resample, mean [95 %]; "
             "**better** / **worse** when the interval lies on one side of 0 (lower FD and KID, "
             "higher mIoU and adherence are better), **tie** when it straddles 0.", "",
             "| arm | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]  # fmt: skip
    for item in items:
        by_name = {r["reading"]: r for r in item["readings"]}
        cells = []
        for c in columns:
            r = by_name.get(c)
            est = None if r is None else sm.Estimate(r["difference"].get("mean"),
                                                     r["difference"].get("ci"))  # fmt: skip
            cells.append(verdict_cell(est, 4 if c.startswith("KID") else 3, r and r["verdict"]))
        lines.append(f"| {labels.get(item['arm'], item['arm'])} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def steps_curve(results: Mapping[str, Any], arms: list[str]) -> dict[str, Any]:
    """A steps curve from a run's ``results.json``: ``arms`` differ in their denoiser steps only
    (each continues the shorter one's model: :meth:`.arms.ArmStages.continues`).

    Returns:
        ``points``: per arm, sorted by steps: ``{"arm", "steps", "fd": {encoder: Estimate},
        "adherence": Estimate}`` (mean over seeds [95 %], as the run's tables); ``changes``:
        each point against the one before, paired by seed and resample (``{"from", "to",
        "fd": {encoder: Estimate}, "adherence": Estimate}``); ``fd_real`` (real vs real per
        encoder) and ``ceiling`` (the adherence ceiling), None where not measured;
        ``encoders``: the run's encoder keys and labels.

    Raises:
        KeyError: an arm the run does not hold.
        InputError: an arm named twice, or two of ``arms`` trained the same steps (no curve
            to draw between them).
    """
    if len(set(arms)) < len(arms):
        raise InputError(f"arms {arms} name an arm twice: give each arm once")
    steps = {a: max(int(r["steps"]) for r in results["arms"][a].values()) for a in arms}
    if len(set(steps.values())) < len(steps):
        raise InputError(f"arms with the same steps ({steps}): give arms that differ in steps")
    scores, encs = results["scores"], encoders(results["scores"])
    frechet, adherence = scores.get("frechet", {}), scores.get("layout_adherence", {})

    def read(per_arm: Mapping[str, Any], arm: str, metric: sm.Metric) -> sm.Estimate:
        return sm.estimate(per_arm.get(arm, {}), metric)

    order = sorted(arms, key=steps.__getitem__)
    points = [{"arm": a, "steps": steps[a], "adherence": read(adherence, a, sm.adherence()),
               "fd": {e: read(frechet, a, sm.fd(e, lab)) for e, lab in encs.items()}}
              for a in order]  # fmt: skip
    changes = [{"from": b, "to": a, "adherence": sm.difference(adherence.get(a, {}),
                                                                adherence.get(b, {}), sm.adherence()),
                "fd": {e: sm.difference(frechet.get(a, {}), frechet.get(b, {}), sm.fd(e, lab))
                       for e, lab in encs.items()}}
               for b, a in zip(order[:-1], order[1:], strict=True)]  # fmt: skip
    first = order[0]
    return {"points": points, "changes": changes,
            "fd_real": {e: read(frechet, first, sm.reference(e, "fd_real_train", "real")).mean
                        for e in encs},
            "ceiling": read(adherence, first, sm.adherence("ceiling")).mean,
            "encoders": encs}  # fmt: skip


def steps_curve_lines(curves: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """A markdown table of :func:`steps_curve` changes for each ``name -> curve`` (e.g. one per
    dataset): a row per step count against the one before, a column per encoder any curve
    used (FD) and layout adherence; each cell ``difference [95 %] better|worse|tie`` (lower
    FD, higher adherence is better; ``-`` where a run did not measure it)."""
    encs: dict[str, str] = {}
    for curve in curves.values():
        encs |= curve["encoders"]
    lines = ["| dataset | steps | " + " | ".join(f"FD {lab}" for lab in encs.values())
             + " | layout adherence |", "|---|---|" + "---|" * (len(encs) + 1)]  # fmt: skip
    for name, curve in curves.items():
        steps = {p["arm"]: p["steps"] for p in curve["points"]}
        for c in curve["changes"]:
            fd = [c["fd"].get(e) for e in encs]
            cells = [verdict_cell(d, 1, d and sm.verdict(d, upper=0.0)) for d in fd]
            adh = c["adherence"]
            cells.append(verdict_cell(adh, 3, sm.verdict(adh, lower=0.0)))
            lines.append(f"| {name} | {steps[c['from']]} -> {steps[c['to']]} | "
                         + " | ".join(cells) + " |")  # fmt: skip
    return lines
