"""The tables of ``results.md``: every score as ``mean [lo, hi]`` over seeds and resamples
(:mod:`.summary`), the paper's numbers beside ours."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from htd_plugins.experiment import summary as sm
from htd_plugins.experiment.claims import encoders

#: The paper's numbers quoted by the issue (HeteroTissue-Diffuse, arXiv 2509.17847): Table 1,
#: FD on Camelyon16 under RN50-BT; Table 2, DeepLabv3+ mIoU on Camelyon16 and PANDA.
PAPER_FD = {"crop": 72, "embedding": 183, "unconditional": 430}
PAPER_IOU = {
    "real": (0.72, 0.96),
    "crop": (0.71, 0.95),
    "embedding": (0.69, 0.88),
    "unconditional": (0.63, 0.86),
}
LABELS = {
    "unconditional": "unconditional (its own model)",
    "semantic_map": "map only",
    "embedding": "map + embedding",
    "crop": "map + crop (the method)",
    "crop_elsewhere": "map + crop cut from the target (ablation)",
    "concat_ldm": "map + crop, concat_ldm backbone",
    "crop_v_prediction": "map + crop, v-prediction",
    "crop_min_snr": "map + crop, Min-SNR-5 weighting",
    "collage": "collage (no model)",
}
#: The reference rows of the FD table: the frechet evaluator's metric -> the row's label.
REFERENCE_ROWS = {
    "fd_real_train": "real training patches (real vs real)",
    "fd_reconstruction": "training patches through the autoencoder (unpaired)",
}


def cell(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def est_cell(est: sm.Estimate, digits: int = 2, signed: bool = False) -> str:
    """``mean [lo, hi]`` (``-`` when not measured); ``signed``: every number with its sign
    (for differences)."""
    if est.mean is None:
        return "-"
    f = f"{'+' if signed else ''}.{digits}f"
    ci = "" if est.ci is None else f" [{est.ci[0]:{f}}, {est.ci[1]:{f}}]"
    return f"{est.mean:{f}}{ci}"


def verdict_cell(est: sm.Estimate | None, digits: int, verdict: str | None) -> str:
    """``difference [95 %] better|worse|tie`` (``-`` when not measured): ``verdict`` is
    :func:`.summary.verdict`'s for "better" (its note in brackets kept)."""
    if est is None or est.mean is None:
        return "-"
    word = {"holds": "better", "does not hold": "worse", "tie": "tie"}  # "... (point values)"
    head, _, rest = str(verdict).partition(" (")
    text = f"{est_cell(est, digits, signed=True)} {word.get(head, head)}"
    return text + (f" ({rest}" if rest else "")


def table(head: list[str], rows: list[list[Any]]) -> str:
    text = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    text += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(text)


def fd_table(scores: Mapping[str, Any], arms: list[str]) -> list[str]:
    """Table 1: FD and KID per encoder, the reference rows below the arms."""
    encs = encoders(scores)
    frechet = scores.get("frechet", {})
    if not encs:
        return []
    head = (["condition"] + [f"FD {lab}" for lab in encs.values()]
            + [f"KID {lab}" for lab in encs.values()] + ["paper FD (Camelyon16, RN50-BT)"])  # fmt: skip
    rows = []
    for arm in arms:
        per_seed = frechet.get(arm, {})
        rows.append([LABELS.get(arm, arm)]
                    + [est_cell(sm.estimate(per_seed, sm.fd(k, lab)), 1) for k, lab in encs.items()]
                    + [est_cell(sm.estimate(per_seed, sm.kid(k, lab)), 4) for k, lab in encs.items()]
                    + [cell(PAPER_FD.get(arm))])  # fmt: skip
    first = frechet.get(arms[0], {})
    for key, label in REFERENCE_ROWS.items():
        ests = [sm.estimate(first, sm.reference(k, key, label)) for k in encs]
        if any(e.mean is not None for e in ests):
            rows.append([label] + [est_cell(e, 1) for e in ests] + ["-"] * len(encs) + ["-"])
    some = next(iter(first.values()), {})
    enc0 = next(iter(some.get("encoders", {}).values()), {})
    return ["## Table 1: Frechet distance and KID to the held-out real patches (lower is better)",
            "", f"Against {enc0.get('n_real')} held-out patches, {enc0.get('n_synthetic')} "
            "synthetic patches per arm and seed. Mean over seeds [95 % interval over seeds and "
            "bootstrap resamples of both sets]; reference rows at the synthetic sets' N, one "
            "value when every seed shares their inputs (the data, the autoencoder and, where the "
            "training split holds more than N patches, the seed's own draw of N of them), else "
            "mean [t interval] over seeds.", "", table(head, rows), ""]  # fmt: skip


def iou_table(scores: Mapping[str, Any], arms: list[str]) -> list[str]:
    """Table 2: DeepLabv3+ trained on real / synthetic / real + synthetic patches."""
    seg = scores.get("deeplabv3plus", {})
    if not seg:
        return []
    real = next(iter(seg.values()))
    first = next(iter(real.values()), {})
    head = ["DeepLabv3+ trained on", "mIoU", "mean Dice", "n train", "paper mIoU Camelyon16",
            "paper mIoU PANDA"]  # fmt: skip

    chance = sm.estimate(real, sm.Metric("", lambda m: m["chance_mean_iou"]))

    def row(label: str, per_seed: Mapping[Any, Any], setting: str, paper: tuple) -> list[Any]:
        dice = sm.estimate(per_seed, sm.Metric("", lambda m: m["settings"][setting]["mean_dice"]))
        n = sm.estimate(per_seed, sm.Metric("", lambda m: m["settings"][setting]["n_train"]))
        iou = sm.estimate(per_seed, sm.iou(setting))
        return [label, est_cell(iou, 3) + chance_flag(iou, chance.mean), cell(dice.mean, 3),
                cell(None if n.mean is None else int(n.mean)), *paper]  # fmt: skip

    rows = [row("real training patches", real, "real", PAPER_IOU["real"])]
    for arm in arms:
        rows.append(row(f"{LABELS.get(arm, arm)} synthetic", seg.get(arm, {}), "synthetic",
                        PAPER_IOU.get(arm, ("-", "-"))))  # fmt: skip
        rows.append(row(f"real + {LABELS.get(arm, arm)} synthetic", seg.get(arm, {}),
                        "real+synthetic", ("-", "-")))  # fmt: skip
    budget = first.get("budget", {})
    return ["## Table 2: segmentation of the held-out real patches", "",
            f"Chance mIoU {cell(chance.mean, 3)}; {first.get('n_test')} test patches from "
            f"{first.get('n_test_sources')} source images; DeepLabv3+ {_budget_text(budget)}. "
            "Mean over seeds [95 % interval over seeds and bootstrap resamples of the test "
            "patches]. The unconditional arm's images are not conditioned on the masks they "
            "are paired with, so its rows measure unpaired data. \"At or below chance\": the "
            "interval reaches chance mIoU.", "", table(head, rows), ""]  # fmt: skip


def chance_flag(est: sm.Estimate, chance: float | None) -> str:
    """``" (at or below chance)"`` when ``est``'s interval (its mean, without one) reaches
    ``chance`` (an mIoU), else ``""``: such a score says nothing of the arm."""
    from htd_plugins.evaluators import at_or_below_chance

    low = None if est.mean is None else est.ci[0] if est.ci else est.mean
    return " (at or below chance)" if at_or_below_chance(low, chance) else ""


def _budget_text(budget: Mapping[str, Any]) -> str:
    keys = ("encoder", "pretrained", "output_stride", "input_size", "steps", "batch_size")
    return ", ".join(f"{k} {budget[k]}" for k in keys if k in budget) or "(budget not recorded)"


def adherence_table(scores: Mapping[str, Any], arms: list[str]) -> list[str]:
    """Layout adherence per arm, the real-data ceiling and chance beside it."""
    adh = scores.get("layout_adherence", {})
    if not adh:
        return []
    rows = []
    for arm in arms:
        per_seed = adh.get(arm, {})
        ratio = sm.Metric("", lambda m: m["ratio"], lambda m: sm.resamples_of(m, "ratio"))
        chance = sm.estimate(per_seed, sm.Metric("", lambda m: m["chance_mean_iou"]))
        adherence = sm.estimate(per_seed, sm.adherence())
        rows.append([LABELS.get(arm, arm), est_cell(adherence, 3) + chance_flag(adherence, chance.mean),
                     est_cell(sm.estimate(per_seed, ratio), 3), cell(chance.mean, 3)])  # fmt: skip
    ceiling = sm.estimate(next(iter(adh.values())), sm.adherence("ceiling"))
    return ["## Layout adherence: do the images follow their masks?", "",
            "A DeepLabv3+ trained on the real training patches segments each synthetic image; "
            "mIoU against the mask it was generated from. Its ceiling, the same network on the "
            f"held-out real patches: {est_cell(ceiling, 3)}. Ratio = adherence / ceiling "
            "per seed (each seed's own real-data network), then the mean over seeds: it can differ "
            "from the ratio of the two means; chance = class maps drawn from the real class "
            "frequencies (\"at or below chance\": the interval reaches it).", "",
            table(["arm", "adherence mIoU", "ratio to ceiling", "chance"], rows), ""]  # fmt: skip


def placement_table(diagnostics: Mapping[str, Any]) -> list[str]:
    """How each arm placed its crops (over seeds)."""
    stats = diagnostics.get("placement") or {}
    if not stats:
        return []
    rows = [[LABELS.get(a, a), cell(s["crops_per_layout"]), cell(s["classes_without_crop"], 3),
             cell(s["median_side"], 1), cell(s["other_source"], 3), cell(s["overlapping_target"], 3)]
            for a, s in stats.items()]  # fmt: skip
    return ["## Crop placement", "",
            "Per arm with crops, over its seeds' synthetic sets (from the provenance every sample "
            "records): crops per layout, fraction of the layouts' classes without a crop, median "
            "crop side (px at the model size), fraction from another source image than the "
            "layout's, and fraction holding pixels of the layout's own window (0 for `outside`).",
            "", table(["arm", "crops / layout", "classes without crop", "median side (px)",
                       "other source", "overlapping target"], rows), ""]  # fmt: skip
