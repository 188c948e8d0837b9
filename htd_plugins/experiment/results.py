"""``results.md`` (the paper's two tables, our numbers beside the paper's), ``results.json`` and
``figure.png`` (map | crops | one column per arm | real) of an experiment run."""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from htd_plugins.experiment.scores import REAL_TRAIN, RECONSTRUCTION

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


def write_results(exp: Any, results: dict[str, Any]) -> dict[str, str]:
    """Write ``results.json``, ``results.md`` and ``figure.png``; returns their paths."""
    from htd_core.io import atomic_write_json, atomic_write_text

    out = exp.out
    results["machine"] = machine()
    results["orderings"] = orderings(results["scores"])
    figure = write_figure(exp, out / "figure.png")
    atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "results.md", markdown(results, figure))
    return {"results_md": str(out / "results.md"), "results_json": str(out / "results.json"),
            "figure": str(figure) if figure else ""}  # fmt: skip


def machine() -> dict[str, Any]:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"platform": platform.platform(), "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "gpu": gpu,
            "load_average": [round(x, 2) for x in os.getloadavg()]}  # fmt: skip


def _fd(scores: Mapping[str, Any], arm: str, enc: str) -> float | None:
    return (
        scores.get("frechet", {})
        .get(arm, {})
        .get("sets", {})
        .get("synthetic", {})
        .get(enc, {})
        .get("fd")
    )


def _encoders(fd_arm: Mapping[str, Any]) -> dict[str, str]:
    """An arm's FD encoders (key: label) in key order: a stage reloaded from its JSON file
    (keys sorted) and one just computed (the evaluator's order) give the same columns and
    the same ``orderings`` list."""
    return dict(sorted(fd_arm.get("encoders", {}).items()))


def _iou(scores: Mapping[str, Any], arm: str, setting: str) -> float | None:
    seg = scores.get("deeplabv3plus", {})
    if arm == "real":
        return seg.get("real", {}).get("settings", {}).get("real", {}).get("mean_iou")
    return seg.get(arm, {}).get("settings", {}).get(setting, {}).get("mean_iou")


def orderings(scores: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The paper's claims, each ``{"claim", "holds", "values"}`` (holds None: not measured)."""
    out = []
    encoders = _encoders(next(iter(scores.get("frechet", {}).values()), {}))
    for enc, label in encoders.items():
        c, e, u = (_fd(scores, a, enc) for a in ("crop", "embedding", "unconditional"))
        out.append({"claim": f"FD(crop) < FD(embedding) < FD(unconditional), {label}",
                    "holds": None if None in (c, e, u) else c < e < u, "values": [c, e, u]})  # fmt: skip
        out.append({"claim": f"FD(crop) <= FD(unconditional) / 2, {label}",
                    "holds": None if None in (c, u) else c <= u / 2, "values": [c, u]})  # fmt: skip
    real, crop, both = (
        _iou(scores, "real", ""),
        _iou(scores, "crop", "synthetic"),
        _iou(scores, "crop", "real+synthetic"),
    )
    chance = scores.get("deeplabv3plus", {}).get("real", {}).get("chance_mean_iou")
    if real is not None and chance is not None and real <= chance:  # a degenerate model
        real = crop = both = None
    out.append(
        {
            "claim": "IoU(real + crop synthetic) >= IoU(real)",
            "holds": None if None in (real, both) else both >= real,
            "values": [both, real],
        }
    )
    out.append(
        {
            "claim": "IoU(crop synthetic) within 0.05 of IoU(real)",
            "holds": None if None in (real, crop) else abs(crop - real) <= 0.05,
            "values": [crop, real],
        }
    )
    return out  # fmt: skip


def _cell(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown(results: Mapping[str, Any], figure: Path | None) -> str:
    """The report: setup, Table 1 (FD), Table 2 (IoU), the orderings, privacy, training."""
    b, scores = results["budget"], results["scores"]
    arms = list(results["arms"])
    m = results["machine"]
    lines = [f"# Experiment `{results['name']}`, budget `{b['name']}`", "",
             f"- data: {results['data']} (fingerprint `{results['data_key']}`)",
             f"- model: `{b['preset']}` preset at {b['image_size']} px; autoencoder "
             f"{results['autoencoder']['steps']} steps, shared by every arm (held-out mean L1 "
             f"{_cell(results['autoencoder'].get('reconstruction_mae_test'))}/255); each arm "
             f"{b['steps']} denoiser steps, seed {results['seed']}; {b['num_inference_steps']} DDIM "
             f"steps, guidance {b['guidance_scale']} (unconditional: 1)",
             f"- synthetic sets: {next(iter(results['generated'].values()))['n']} patches per "
             "arm from training layouts (mask and crops of the train split, crops placed "
             "elsewhere), the same layouts and seeds for every arm",
             f"- wall time: autoencoder {_cell(results['autoencoder'].get('seconds'), 0)} s "
             f"({_cell(results['autoencoder'].get('steps_per_second'))} steps/s); the last call "
             f"{results.get('wall_minutes_this_call')} min (stages done before are reused, not "
             "counted); per arm below",
             f"- machine: {m['platform']}, {m['cpus']} CPUs, torch threads {m['torch_threads']}, "
             f"GPU {m['gpu'] or 'none'}, load at the end {m['load_average']}", ""]  # fmt: skip
    fd = scores.get("frechet", {})
    if fd:
        encoders = _encoders(next(iter(fd.values())))
        n_real = next(iter(fd.values()))["n_real"]
        head = ["condition"] + [f"FD {lab}" for lab in encoders.values()] + \
               [f"KID {lab}" for lab in encoders.values()] + ["paper FD (Camelyon16, RN50-BT)"]  # fmt: skip
        rows = []
        for arm in arms:
            sets = fd[arm]["sets"]
            rows.append([LABELS.get(arm, arm)] + [_cell(sets["synthetic"][k]["fd"]) for k in encoders]
                        + [_cell(sets["synthetic"][k].get("kid"), 4) for k in encoders]
                        + [_cell(PAPER_FD.get(arm))])  # fmt: skip
        ref = fd[arms[0]]["sets"]
        for row, label in ((REAL_TRAIN, "real training patches (real vs real)"),
                           (RECONSTRUCTION, "held-out patches through the autoencoder")):  # fmt: skip
            if row in ref:
                rows.append([label] + [_cell(ref[row].get(k, {}).get("fd")) for k in encoders]
                            + ["-"] * len(encoders) + ["-"])  # fmt: skip
        lines += ["## Table 1: Frechet distance to the held-out real patches (lower is better)", "",
                  f"Against {n_real} held-out patches; N synthetic as above.", "",
                  _table(head, rows), ""]  # fmt: skip
    seg = scores.get("deeplabv3plus", {})
    if seg:
        head = ["DeepLabv3+ trained on", "mIoU", "mean Dice", "pixel accuracy", "n train",
                "paper mIoU Camelyon16", "paper mIoU PANDA"]  # fmt: skip
        real = seg["real"]["settings"]["real"]
        rows = [["real training patches", _cell(real["mean_iou"], 3), _cell(real.get("mean_dice"), 3),
                 _cell(real.get("pixel_accuracy"), 3), real.get("n_train"), *PAPER_IOU["real"]]]  # fmt: skip
        for arm in arms:
            for setting, what in (("synthetic", ""), ("real+synthetic", "real + ")):
                s = seg[arm]["settings"].get(setting, {})
                paper = PAPER_IOU.get(arm, ("-", "-")) if setting == "synthetic" else ("-", "-")
                rows.append([f"{what}{LABELS.get(arm, arm)} synthetic", _cell(s.get("mean_iou"), 3),
                             _cell(s.get("mean_dice"), 3), _cell(s.get("pixel_accuracy"), 3),
                             s.get("n_train"), *paper])  # fmt: skip
        lines += ["## Table 2: segmentation of the held-out real patches", "",
                  f"Chance mIoU {_cell(seg['real'].get('chance_mean_iou'), 3)}; "
                  f"{seg['real'].get('n_test')} test patches from {seg['real'].get('n_test_sources')} "
                  "source images. The unconditional arm's images are not conditioned on the masks "
                  "they are paired with (each carries its layout's mask), so its rows measure "
                  "unpaired data.", "", _table(head, rows), ""]  # fmt: skip
    lines += ["## The paper's orderings", ""]
    if b["name"] == "tiny":
        lines += ["The `tiny` budget checks that the runner works; its verdicts mean nothing.", ""]
    for o in results["orderings"]:
        verdict = {True: "holds", False: "does not hold", None: "not measured (or "
                   "DeepLabv3+ on real data at chance)"}[o["holds"]]  # fmt: skip
        lines.append(
            f"- {o['claim']}: **{verdict}** ({', '.join(_cell(v, 3) for v in o['values'])})"
        )
    lines.append("")
    lines += diagnostics(results)
    if scores.get("privacy"):
        head = ["arm", "images: fraction below", "crops: fraction below", "n audited", "encoder"]
        rows = [[a, _cell(_below(scores["privacy"][a], "image"), 3),
                 _cell(_below(scores["privacy"][a], "crop"), 3),
                 scores["privacy"][a].get("n_synthetic"), scores["privacy"][a].get("encoder")]
                for a in arms]  # fmt: skip
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
    fd = scores.get("frechet", {})
    if fd:
        first = next(iter(fd.values()))
        for enc, label in _encoders(first).items():
            floor = first["sets"].get(RECONSTRUCTION, {}).get(enc, {}).get("fd")
            real = first["sets"].get(REAL_TRAIN, {}).get(enc, {}).get("fd")
            arm_fd = ", ".join(f"{a} {_cell(_fd(scores, a, enc))}" for a in arms)
            lines.append(f"- {label}: real vs real {_cell(real)}, held-out patches through the "
                         f"autoencoder {_cell(floor)}; {arm_fd}. Every generated image is decoded "
                         "by that autoencoder: an arm near its row is limited by the autoencoder "
                         "more than by the denoiser.")  # fmt: skip
    fidelity = scores.get("crop_fidelity")
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


def _builder_names(arm: Any) -> list[str]:
    return [b if isinstance(b, str) else str(b.get("name")) for b in arm.builders]


def _table(head: list[str], rows: list[list[Any]]) -> str:
    text = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    text += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(text)


def write_figure(exp: Any, path: Path, n: int = 8) -> Path | None:
    """Map | crops | one column per arm | real, for the first ``n`` layouts."""
    from htd_core.dataset import Dataset
    from htd_plugins.evaluators.reporting.figures import save_grid
    from htd_plugins.experiment.scores import crop_view

    layouts = exp.layouts()[:n]
    arms = [a.name for a in exp.config.arms]
    sets = {a: Dataset(exp.out / "arms" / a / "synthetic") for a in arms}
    crop_arm = next((a for a in exp.config.arms if "crop" in _builder_names(a)), None)
    views = []
    if crop_arm is not None:
        from htd_core.pipeline import Pipeline

        pipe = Pipeline.from_pretrained(exp.out / "arms" / crop_arm.name / "train" / "model")
        conds = pipe.build_conditions(layouts, seed=exp.config.seed)
        k = len(layouts[0].class_map)
        views = [crop_view(c, k) for c in conds]
    rows = []
    for i, layout in enumerate(layouts):
        row = {"map": layout.class_map.colorize(layout.mask)}
        if views:
            row["crops"] = views[i]
        for a in arms:
            row[a] = sets[a][i].image if i < len(sets[a]) else None
        row["real"] = layout.image
        rows.append(row)
    return save_grid(
        path, rows, title=f"{exp.config.name}: training layouts, each arm, real", tile=1.4
    )
