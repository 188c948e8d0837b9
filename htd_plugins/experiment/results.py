"""``results.md`` (the paper's two tables, our numbers beside the paper's), ``results.json``,
``figure.png`` (map | crops | one column per arm | real) and ``evaluation/report.md`` (every
evaluator's own section, as ``htd evaluate`` writes it) of an experiment run.

The tables read the metrics of the paper's evaluators (``frechet``, ``deeplabv3plus``,
``privacy``) when they ran; any other evaluator's results are in ``results.json`` and its
section of ``evaluation/report.md``.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: The reference rows of the FD table: the frechet evaluator's metric -> the row's label.
REFERENCE_ROWS = {
    "fd_real_train": "real training patches (real vs real)",
    "fd_reconstruction": "held-out patches through the autoencoder",
}

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
    "crop": "crop (semantic map + real crops)",
    "embedding": "embedding (semantic map + crop embeddings)",
    "unconditional": "unconditional (its own model)",
    "semantic_map": "semantic map only",
    "concat_ldm": "crop, concat_ldm backbone",
}


def write_results(exp: Any, results: dict[str, Any], driver: Any = None) -> dict[str, str]:
    """Write ``results.json``, ``results.md``, ``figure.png`` and (given the evaluation
    ``driver``) ``evaluation/report.md``; returns their paths."""
    from htd_core.io import atomic_write_json, atomic_write_text

    out = exp.out
    results["machine"] = machine()
    results["orderings"] = orderings(results["scores"])
    from htd_plugins.experiment.figures import write_evaluation_report, write_figure

    figure = write_figure(exp, out / "figure.png")
    report = write_evaluation_report(exp, results, driver) if driver is not None else None
    atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "results.md", markdown(results, figure, report))
    return {"results_md": str(out / "results.md"), "results_json": str(out / "results.json"),
            "figure": str(figure) if figure else "",
            "evaluation_report": str(report) if report else ""}  # fmt: skip


def machine() -> dict[str, Any]:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"platform": platform.platform(), "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "gpu": gpu,
            "load_average": [round(x, 2) for x in os.getloadavg()]}  # fmt: skip


def _frechet(scores: Mapping[str, Any], arm: str) -> dict[str, Any]:
    """The frechet evaluator's per-encoder metrics of one arm (empty when it did not run)."""
    return scores.get("frechet", {}).get(arm, {}).get("encoders", {})


def _fd(scores: Mapping[str, Any], arm: str, enc: str) -> float | None:
    return _frechet(scores, arm).get(enc, {}).get("fd")


def _encoders(scores: Mapping[str, Any]) -> dict[str, str]:
    """The FD encoders (key: label) in key order, the same whether a result was just computed
    or reloaded from its JSON file (keys sorted)."""
    first = next(iter(scores.get("frechet", {}).values()), {})
    return {k: v["label"] for k, v in sorted(first.get("encoders", {}).items())}


def _seg(scores: Mapping[str, Any]) -> dict[str, Any]:
    """The deeplabv3plus evaluator's metrics of the first arm (the ``real`` setting, chance
    and test set are the same for every arm)."""
    return next(iter(scores.get("deeplabv3plus", {}).values()), {})


def _iou(scores: Mapping[str, Any], arm: str, setting: str) -> float | None:
    if arm == "real":
        return _seg(scores).get("settings", {}).get("real", {}).get("mean_iou")
    seg = scores.get("deeplabv3plus", {}).get(arm, {})
    return seg.get("settings", {}).get(setting, {}).get("mean_iou")


def orderings(scores: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The paper's claims, each ``{"claim", "holds", "values", "unmeasured"}`` (holds None:
    not measured, for the reason ``unmeasured`` gives)."""
    out = []
    fd_missing = "an arm it compares did not run"
    for enc, label in _encoders(scores).items():
        c, e, u = (_fd(scores, a, enc) for a in ("crop", "embedding", "unconditional"))
        out.append({"claim": f"FD(crop) < FD(embedding) < FD(unconditional), {label}",
                    "holds": None if None in (c, e, u) else c < e < u, "values": [c, e, u],
                    "unmeasured": fd_missing})  # fmt: skip
        out.append({"claim": f"FD(crop) <= FD(unconditional) / 2, {label}",
                    "holds": None if None in (c, u) else c <= u / 2, "values": [c, u],
                    "unmeasured": fd_missing})  # fmt: skip
    real, crop, both = (
        _iou(scores, "real", ""),
        _iou(scores, "crop", "synthetic"),
        _iou(scores, "crop", "real+synthetic"),
    )
    chance = _seg(scores).get("chance_mean_iou")
    iou_missing = "the crop arm or DeepLabv3+ did not run"
    if real is not None and chance is not None and real <= chance:  # a degenerate model
        real = crop = both = None
        iou_missing = "DeepLabv3+ trained on real data scored at chance: no verdict"
    out.append({"claim": "IoU(real + crop synthetic) >= IoU(real)",
                "holds": None if None in (real, both) else both >= real, "values": [both, real],
                "unmeasured": iou_missing})  # fmt: skip
    out.append({"claim": "IoU(crop synthetic) within 0.05 of IoU(real)",
                "holds": None if None in (real, crop) else abs(crop - real) <= 0.05,
                "values": [crop, real], "unmeasured": iou_missing})  # fmt: skip
    return out


def _cell(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _generation_line(results: Mapping[str, Any]) -> str:
    """How the arms sampled, as the generate stages recorded it (the options resolved and
    used, and the guidance each arm's samples record: a null condition is never guided)."""
    gens = results["generated"]
    first = next(iter(gens.values()), {}).get("options", {})
    guided = {a: g.get("guidance_used") for a, g in gens.items()}
    per_arm = ", ".join(
        f"{a} {'/'.join(_cell(v, 1) for v in used)}" for a, used in guided.items() if used
    )
    return (f"{first.get('num_inference_steps')} {first.get('scheduler')} steps, guidance "
            f"{first.get('guidance_scale')} asked; used per arm: {per_arm or '-'}")  # fmt: skip


def markdown(results: Mapping[str, Any], figure: Path | None, report: Path | None = None) -> str:
    """The report: setup, Table 1 (FD), Table 2 (IoU), the orderings, privacy, training."""
    b, scores = results["budget"], results["scores"]
    arms = list(results["arms"])
    m = results["machine"]
    lines = [f"# Experiment `{results['name']}`, budget `{b['name']}`", "",
             f"- data: {results['data']} (fingerprint `{results['data_key']}`)",
             f"- model: `{b['preset']}` preset at {b['image_size']} px; autoencoder "
             f"{results['autoencoder']['steps']} steps, shared by every arm (held-out mean L1 "
             f"{_cell(results['autoencoder'].get('reconstruction_mae_test'))}/255); each arm "
             f"{b['steps']} denoiser steps, seed {results['seed']}",
             f"- generation: {_generation_line(results)}",
             f"- synthetic sets: {next(iter(results['generated'].values()))['n']} patches per "
             "arm from training layouts (mask and crops of the train split, crops placed "
             "elsewhere), the same layouts and seeds for every arm",
             f"- wall time: autoencoder {_cell(results['autoencoder'].get('seconds'), 0)} s "
             f"({_cell(results['autoencoder'].get('steps_per_second'))} steps/s); the last call "
             f"{results.get('wall_minutes_this_call')} min (stages done before are reused, not "
             "counted); per arm below",
             f"- machine: {m['platform']}, {m['cpus']} CPUs, torch threads {m['torch_threads']}, "
             f"GPU {m['gpu'] or 'none'}, load at the end {m['load_average']}"]  # fmt: skip
    if report is not None:
        lines.append(f"- every evaluator's own section ({', '.join(scores)}), as `htd evaluate` "
                     f"writes it: [{report.parent.name}/{report.name}]({report.parent.name}/{report.name})")  # fmt: skip
    lines.append("")
    encoders = _encoders(scores)
    if encoders:
        first = _frechet(scores, arms[0])
        n_real = next(iter(first.values()))["n_real"]
        head = ["condition"] + [f"FD {lab}" for lab in encoders.values()] + \
               [f"KID {lab}" for lab in encoders.values()] + ["paper FD (Camelyon16, RN50-BT)"]  # fmt: skip
        rows = []
        for arm in arms:
            enc = _frechet(scores, arm)
            rows.append([LABELS.get(arm, arm)] + [_cell(enc.get(k, {}).get("fd")) for k in encoders]
                        + [_cell(enc.get(k, {}).get("kid"), 4) for k in encoders]
                        + [_cell(PAPER_FD.get(arm))])  # fmt: skip
        for key, label in REFERENCE_ROWS.items():
            if any(key in first.get(k, {}) for k in encoders):
                rows.append([label] + [_cell(first.get(k, {}).get(key)) for k in encoders]
                            + ["-"] * len(encoders) + ["-"])  # fmt: skip
        lines += ["## Table 1: Frechet distance to the held-out real patches (lower is better)", "",
                  f"Against {n_real} held-out patches; N synthetic as above.", "",
                  _table(head, rows), ""]  # fmt: skip
    seg = _seg(scores)
    if seg:
        head = ["DeepLabv3+ trained on", "mIoU", "mean Dice", "pixel accuracy", "n train",
                "paper mIoU Camelyon16", "paper mIoU PANDA"]  # fmt: skip
        real = seg["settings"]["real"]
        rows = [["real training patches", _cell(real["mean_iou"], 3), _cell(real.get("mean_dice"), 3),
                 _cell(real.get("pixel_accuracy"), 3), real.get("n_train"), *PAPER_IOU["real"]]]  # fmt: skip
        for arm in arms:
            for setting, what in (("synthetic", ""), ("real+synthetic", "real + ")):
                st = scores["deeplabv3plus"][arm]["settings"].get(setting, {})
                paper = PAPER_IOU.get(arm, ("-", "-")) if setting == "synthetic" else ("-", "-")
                rows.append([f"{what}{LABELS.get(arm, arm)} synthetic", _cell(st.get("mean_iou"), 3),
                             _cell(st.get("mean_dice"), 3), _cell(st.get("pixel_accuracy"), 3),
                             st.get("n_train"), *paper])  # fmt: skip
        lines += ["## Table 2: segmentation of the held-out real patches", "",
                  f"Chance mIoU {_cell(seg.get('chance_mean_iou'), 3)}; "
                  f"{seg.get('n_test')} test patches from {seg.get('n_test_sources')} "
                  "source images. The unconditional arm's images are not conditioned on the masks "
                  "they are paired with (each carries its layout's mask), so its rows measure "
                  "unpaired data.", "", _table(head, rows), ""]  # fmt: skip
    lines += ["## The paper's orderings", ""]
    if b["name"] == "tiny":
        lines += ["The `tiny` budget checks that the runner works; its verdicts mean nothing.", ""]
    for o in results["orderings"]:
        verdict = {True: "holds", False: "does not hold"}.get(
            o["holds"], f"not measured ({o.get('unmeasured', 'a score is missing')})"
        )
        lines.append(
            f"- {o['claim']}: **{verdict}** ({', '.join(_cell(v, 3) for v in o['values'])})"
        )
    lines.append("")
    lines += diagnostics(results)
    privacy = scores.get("privacy", {})
    if privacy:
        head = ["arm", "images: fraction below", "crops: fraction below", "n audited", "encoder"]
        rows = [[a, _cell(_below(privacy[a], "image"), 3), _cell(_below(privacy[a], "crop"), 3),
                 privacy[a].get("n_synthetic"), privacy[a].get("encoder")] for a in arms]  # fmt: skip
        lines += ["## Privacy audit", "",
                  "Fraction of synthetic images (and of their crop regions) nearer to a training "
                  "patch, in the encoder's feature space, than the 5 % quantile of held-out real "
                  "patches' distances to the training set (0 expected when nothing is copied; "
                  "the quantile itself would give 0.05).", "", _table(head, rows), ""]  # fmt: skip
    rows = [[a, t.get("steps"), _cell(t.get("steps_per_second")), _cell(t.get("final_loss"), 4),
             _cell(t.get("seconds"), 0), _cell(results["generated"][a].get("seconds"), 0)]
            for a, t in results["arms"].items()]  # fmt: skip
    lines += [
        "## Training",
        "",
        _table(["arm", "steps", "steps/s", "final loss", "train s", "generate s"], rows),
        "",
    ]
    if figure:
        lines += [f"![map, crops, each arm, real]({figure.name})", ""]
    return "\n".join(lines)


def diagnostics(results: Mapping[str, Any]) -> list[str]:
    """Why an ordering may miss: the autoencoder's reconstruction row, and whether the crops are
    used."""
    scores, arms = results["scores"], list(results["arms"])
    lines = ["## Diagnostics", ""]
    first = _frechet(scores, arms[0]) if arms else {}
    for enc, label in _encoders(scores).items():
        floor = first.get(enc, {}).get("fd_reconstruction")
        real = first.get(enc, {}).get("fd_real_train")
        arm_fd = ", ".join(f"{a} {_cell(_fd(scores, a, enc))}" for a in arms)
        lines.append(f"- {label}: real vs real {_cell(real)}, held-out patches through the "
                     f"autoencoder {_cell(floor)}; {arm_fd}. Every generated image is decoded "
                     "by that autoencoder: an arm near its row is limited by the autoencoder "
                     "more than by the denoiser.")  # fmt: skip
    fidelity = results.get("diagnostics", {}).get("crop_fidelity")
    if fidelity and fidelity.get("n_crops"):
        mae = fidelity["mae"]
        cells = ", ".join(f"{k} {_cell(v, 1)}" for k, v in mae.items())
        lines.append(f"- crop fidelity (mean |generated - crop| at the crop arm's {fidelity['n_crops']} "
                     f"placed crops, 0-255): {cells}. The crop arm near the unconditional arm "
                     "means the model ignores its crops; `real_layout` is the real tissue of the "
                     "same class there.")  # fmt: skip
    return [*lines, ""]


def _below(metrics: Mapping[str, Any], level: str) -> float | None:
    """Fraction of synthetic images (``level`` image or crop) nearer a training image than
    the calibration quantile, in feature space."""
    try:
        return metrics["feature"][level]["unmasked"]["fraction_below"]
    except (KeyError, TypeError):
        return None


def _table(head: list[str], rows: list[list[Any]]) -> str:
    text = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    text += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(text)
