"""``results.md`` (the paper's tables with intervals, our numbers beside the paper's, and the
orderings read from them), ``results.json``, ``figure.png`` (map | crops | one column per arm
| real) and ``evaluation/report.md`` (every evaluator's own section, as ``htd evaluate``
writes it) of an experiment run.

The tables read the metrics of the paper's evaluators (``frechet``, ``deeplabv3plus``,
``layout_adherence``, ``privacy``) when they ran; any other evaluator's results are in
``results.json`` and its section of ``evaluation/report.md``.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from htd_plugins.experiment import summary as sm
from htd_plugins.experiment import tables as tb
from htd_plugins.experiment.ablation import ablation, ablation_lines
from htd_plugins.experiment.claims import encoders, orderings


def write_results(exp: Any, results: dict[str, Any], drivers: Mapping[int, Any] | None = None
                  ) -> dict[str, str]:  # fmt: skip
    """Write ``results.json``, ``results.md``, ``figure.png`` and (given the evaluation
    ``drivers`` of each seed) ``evaluation/report.md``; returns their paths."""
    from htd_core.io import atomic_write_json, atomic_write_text
    from htd_plugins.experiment.figures import write_evaluation_report, write_figure

    out = exp.out
    results["machine"] = machine()
    results["orderings"] = orderings(results["scores"], list(results["arms"]))
    results["ablation"] = ablation(results["scores"], list(results["arms"]))
    figure = write_figure(exp, out / "figure.png")
    report = write_evaluation_report(exp, results, drivers) if drivers else None
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


def _generation_line(results: Mapping[str, Any]) -> str:
    """How the arms sampled, as the generate stages recorded it (the options resolved and
    used, and the guidance each arm's samples record: a null condition is never guided)."""
    gens = {a: list(per.values()) for a, per in results["generated"].items()}
    first = next(iter(gens.values()))[0].get("options", {})
    used = {
        a: sorted({v for g in per for v in g.get("guidance_used") or []}) for a, per in gens.items()
    }
    per_arm = ", ".join(f"{a} {'/'.join(tb.cell(v, 1) for v in u)}" for a, u in used.items() if u)
    return (f"{first.get('num_inference_steps')} {first.get('scheduler')} steps, guidance "
            f"{first.get('guidance_scale')} asked; used per arm: {per_arm or '-'}")  # fmt: skip


def _weighting(per_arm: Mapping[str, str]) -> str:
    """``Min-SNR-5 (every arm)`` or the arms' own, e.g. ``crop unweighted, crop_min_snr ...``."""
    kinds = set(per_arm.values())
    if len(kinds) == 1:
        return f"{kinds.pop()} (every arm)"
    return ", ".join(f"{a} {w}" for a, w in per_arm.items()) or "-"


def _header(results: Mapping[str, Any], report: Path | None) -> list[str]:
    b, m, vae = results["budget"], results["machine"], results["autoencoder"]
    gens = next(iter(results["generated"].values()))
    bank = results.get("crop_bank") or {}
    lines = [f"# Experiment `{results['name']}`, budget `{b['name']}`", "",
             f"- data: {results['data']} (fingerprint `{results['data_key']}`)",
             f"- model: `{b['preset']}` preset at {results.get('image_size')} px; autoencoder "
             f"{vae['steps']} steps, trained once (first seed) and shared by every arm and seed "
             f"(held-out mean L1 {tb.cell(vae.get('reconstruction_mae_test'))}/255); each arm "
             f"{b['steps']} denoiser steps per seed",
             f"- denoiser loss: {_weighting(results.get('loss_weighting') or {})}",
             f"- seeds: {results['seeds']} (each arm trained and sampled once per seed; the data, "
             "layouts, crop bank and autoencoder use the first)",
             f"- generation: {_generation_line(results)}",
             f"- synthetic sets: {next(iter(gens.values()))['n']} patches per arm and seed from "
             "training layouts (the same for every arm and seed); crops from the training "
             f"split's crop bank ({bank.get('crops', '-')} crops per class), placed as each "
             "arm's builder says (see Crop placement)",
             f"- wall time: autoencoder {tb.cell(vae.get('seconds'), 0)} s "
             f"({tb.cell(vae.get('steps_per_second'))} steps/s); the last call "
             f"{results.get('wall_minutes_this_call')} min (stages done before are reused, not "
             "counted); per arm below",
             f"- machine: {m['platform']}, {m['cpus']} CPUs, torch threads {m['torch_threads']}, "
             f"GPU {m['gpu'] or 'none'}, load at the end {m['load_average']}"]  # fmt: skip
    if report is not None:
        rel = f"{report.parent.name}/{report.name}"
        lines.append(f"- every evaluator's own section per arm and seed, as `htd evaluate` "
                     f"writes it: [{rel}]({rel})")  # fmt: skip
    return [*lines, ""]


def _ci(est: Mapping[str, Any]) -> str:
    ci = est.get("ci")
    mean = est.get("mean")
    if mean is None:
        return "-"
    return f"{mean:+.4g}" + ("" if ci is None else f" [{ci[0]:+.4g}, {ci[1]:+.4g}]")


def _verdict(claim: Mapping[str, Any]) -> str:
    """``**verdict** (difference [95 %])``; a claim not measured shows no difference."""
    if claim["verdict"].startswith("not measured"):
        return f"**{claim['verdict']}**"
    return f"**{claim['verdict']}** ({_ci(claim['difference'])})"


def ordering_lines(results: Mapping[str, Any]) -> list[str]:
    lines = ["## The paper's orderings", "",
             "Each claim is read from the 95 % interval of the paired difference (seed by seed, "
             "resample by resample): **holds** when the interval lies on the claim's side, "
             "**does not hold** when it lies on the other, **tie** when it straddles. "
             "Difference = left side - right side.", ""]  # fmt: skip
    if results["budget"]["name"] == "tiny":
        lines += ["The `tiny` budget checks that the runner works; its verdicts mean nothing.", ""]
    for o in results["orderings"]:
        text = f"- {o['claim']}: {_verdict(o)}"
        if "kid" in o:
            text += f"; KID: {_verdict(o['kid'])}"
        lines.append(text)
    return [*lines, ""]


def markdown(results: Mapping[str, Any], figure: Path | None, report: Path | None = None) -> str:
    """The report: setup, Table 1 (FD, KID), Table 2 (IoU), layout adherence, the orderings,
    crop placement, diagnostics, privacy, training."""
    scores, arms = results["scores"], list(results["arms"])
    lines = _header(results, report)
    lines += tb.fd_table(scores, arms) + tb.iou_table(scores, arms)
    lines += tb.adherence_table(scores, arms) + ordering_lines(results)
    lines += ablation_lines(results.get("ablation", []), tb.LABELS)
    lines += tb.placement_table(results.get("diagnostics", {})) + diagnostics(results)
    lines += privacy_lines(scores, arms) + training_lines(results)
    if figure:
        lines += [f"![map, crops, each arm, real]({figure.name})", ""]
    return "\n".join(lines)


def diagnostics(results: Mapping[str, Any]) -> list[str]:
    """Why an ordering may miss: the autoencoder's reconstruction row, whether the crops are
    used, and each arm's FD at each seed."""
    scores, arms = results["scores"], list(results["arms"])
    frechet = scores.get("frechet", {})
    shared, elsewhere = decoded(results, arms)
    lines = ["## Diagnostics", ""]
    for key, label in encoders(scores).items():
        per_seed = frechet.get(arms[0], {})
        recon = sm.estimate(per_seed, sm.reference(key, "fd_reconstruction", ""))
        real = sm.estimate(per_seed, sm.reference(key, "fd_real_train", ""))
        fd = sm.fd(key, label)
        seeds = "; ".join(
            f"{a} "
            + "/".join(tb.cell(sm.read(fd.point, m), 1) for m in frechet.get(a, {}).values())
            for a in arms
        )
        lines.append(f"- {label}: real vs real {tb.est_cell(real, 1)}, training patches through "
                     f"the autoencoder {tb.est_cell(recon, 1)} (same N, unpaired); FD per seed: "
                     f"{seeds}. {autoencoder_reading(recon, {a: sm.estimate(frechet.get(a, {}), fd) for a in shared})}"
                     f"{elsewhere}")  # fmt: skip
    fidelity = results.get("diagnostics", {}).get("crop_fidelity") or {}
    if fidelity.get("n_crops"):
        cells = ", ".join(f"{k} {tb.cell(v, 1)}" for k, v in fidelity["mae"].items())
        lines.append(f"- crop fidelity (mean |generated - crop| at the {fidelity['arm']} arm's "
                     f"{fidelity['n_crops']} placed crops over its seeds, 0-255): {cells}. An arm "
                     "near the unconditional arm ignores its crops; `real_layout` is the real "
                     "tissue of the same class there (the crop is from outside the window, so "
                     "this is the natural difference between two pieces of that tissue).")  # fmt: skip
    return [*lines, ""]


def decoded(results: Mapping[str, Any], arms: list[str]) -> tuple[list[str], str]:
    """The arms the run's shared autoencoder decodes (every arm in runs that predate
    ``decoded_by``), and a sentence naming the others: a training-free arm, or an arm on an
    autoencoder of its own, which the shared reconstruction row does not bound."""
    by = results.get("decoded_by") or {}
    path = (results.get("autoencoder") or {}).get("path")
    shared = [a for a in arms if a not in by or (by[a] is not None and by[a] == path)]
    other = [f"{a} ({'no autoencoder' if by[a] is None else 'its own autoencoder'})"
             for a in arms if a not in shared]  # fmt: skip
    return shared, (f" Not decoded by it, so not read against that row: {', '.join(other)}."
                    if other else "")  # fmt: skip


def autoencoder_reading(recon: Any, arms: Mapping[str, Any]) -> str:
    """What the autoencoder's reconstruction row says about each arm, from the numbers: an arm
    whose FD interval reaches the row (or whose FD is at or below it) may be limited by the
    autoencoder's round trip; an arm above it is further from the real images than the round
    trip alone, so its denoiser adds the rest. No claim without a reconstruction row."""
    if recon.mean is None:
        return "No reconstruction row (no autoencoder was measured)."
    if not arms:
        return ""
    reach, above = [], []
    for arm, est in arms.items():
        if est.mean is None:
            continue
        low = est.ci[0] if est.ci and est.ci[0] is not None else est.mean
        (reach if low <= recon.mean else above).append(arm)
    parts = []
    if reach:
        parts.append(f"{', '.join(reach)} reach the reconstruction row (FD at or below "
                     f"{recon.mean:.1f} within the interval): the autoencoder's round trip may "
                     "limit them as much as the denoiser")  # fmt: skip
    if above:
        parts.append(f"{', '.join(above)} lie above it (the whole interval): they are further "
                     "from the real images than the round trip alone, so the autoencoder is "
                     "not what limits them")  # fmt: skip
    return "Every generated image is decoded by that autoencoder; " + "; ".join(parts) + "."


def privacy_lines(scores: Mapping[str, Any], arms: list[str]) -> list[str]:
    privacy = scores.get("privacy", {})
    if not privacy:
        return []

    def below(level: str) -> sm.Metric:
        return sm.Metric("", lambda m: m["feature"][level]["unmasked"]["fraction_below"])

    rows = []
    for a in arms:
        per_seed = privacy.get(a, {})
        first = next(iter(per_seed.values()), {})
        rows.append([a, tb.est_cell(sm.estimate(per_seed, below("image")), 3),
                     tb.est_cell(sm.estimate(per_seed, below("crop")), 3),
                     first.get("n_synthetic"), first.get("encoder")])  # fmt: skip
    head = ["arm", "images: fraction below", "crops: fraction below", "n audited", "encoder"]
    return ["## Privacy audit", "",
            "Fraction of synthetic images (and of their crop regions) nearer to a training "
            "patch, in the encoder's feature space, than the 5 % quantile of held-out real "
            "patches' distances to the training set (0 expected when nothing is copied; the "
            "quantile itself would give 0.05). Mean over seeds [t interval].", "",
            tb.table(head, rows), ""]  # fmt: skip


def training_lines(results: Mapping[str, Any]) -> list[str]:
    """Per arm: seeds, steps, mean steps/s and final loss, seconds over all seeds."""

    def mean(runs: list[Mapping[str, Any]], key: str) -> float | None:
        values = [r[key] for r in runs if r.get(key) is not None]
        return sum(values) / len(values) if values else None

    rows = []
    for a, per_seed in results["arms"].items():
        runs, gen = list(per_seed.values()), list(results["generated"][a].values())
        rows.append([a, len(runs), runs[0].get("steps"), tb.cell(mean(runs, "steps_per_second")),
                     tb.cell(mean(runs, "final_loss"), 4),
                     tb.cell(float(sum(r.get("seconds") or 0 for r in runs)), 0),
                     tb.cell(float(sum(g.get("seconds") or 0 for g in gen)), 0)])  # fmt: skip
    head = ["arm", "seeds", "steps", "steps/s (mean)", "final loss (mean)", "train s (all seeds)",
            "generate s (all seeds)"]  # fmt: skip
    continued = sorted({f"{a} from {r['continued_from']['arm']}'s model at step "
                        f"{r['continued_from']['step']}" for a, per_seed in results["arms"].items()
                        for r in per_seed.values() if r.get("continued_from")})  # fmt: skip
    note = ([f"Continued (the same recipe but for the steps, so the same trajectory): "
             f"{'; '.join(continued)}. Their train s and steps/s count the steps after it only.",
             ""] if continued else [])  # fmt: skip
    return ["## Training", "", tb.table(head, rows), "", *note]
