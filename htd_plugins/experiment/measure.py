"""The experiment's measurements: every evaluator the file names, through the one evaluation
driver (:class:`htd_core.evaluation.EvaluationDriver`), and the crop-fidelity diagnostic.

Each evaluator scores each arm's synthetic set against the real patches (the held-out ones
marked ``split=test``, streamed first, then the training ones), built with the experiment's
run-wide settings (device, seed, ``--encoders``, ``OUT/cache`` for features and for results
that depend on the real patches only, the shared autoencoder through an arm's saved model) and
its options: :data:`~.config.EVALUATOR_DEFAULTS`, then the budget's, then the file's own.
Results are kept in ``OUT/evaluation/results``, keyed by their inputs, so a rerun reuses them
and a regenerated arm is scored afresh. The paper's evaluators give ``results.md`` its tables
(:mod:`.results`); every evaluator also writes its own section, as in ``htd evaluate``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from htd_core.types import TissueSample


def device(chosen: str | None = None) -> str:
    """Where evaluators run: ``chosen`` (``--device``), else a GPU when there is one."""
    import torch

    if chosen not in (None, "auto"):
        return str(chosen)
    return "cuda" if torch.cuda.is_available() else "cpu"


def evaluation_driver(exp: Any, model_dir: str | Path | None = None, log: Any = None, *,
                      seed: int) -> Any:  # fmt: skip
    """The driver of the experiment's evaluators at one seed (see the module docstring)."""
    from htd_core.evaluation import EvaluationDriver, EvaluatorRun
    from htd_core.interfaces.evaluator import RunSettings
    from htd_plugins.experiment.config import EVALUATOR_DEFAULTS

    runs = []
    for i, item in enumerate(exp.config.evaluators):
        run = EvaluatorRun.parse(item, f"{exp.config.source}: evaluators[{i}]")
        options = {**EVALUATOR_DEFAULTS.get(run.name, {}),
                   **exp.budget.evaluators.get(run.name, {}), **run.options}  # fmt: skip
        runs.append(EvaluatorRun(run.name, options, subset=exp.budget.subsets.get(run.name)))
    settings = RunSettings(
        device=device(exp.config.model.get("device")), encoders=tuple(exp.config.encoders), cache_dir=exp.out / "cache",
        model=Path(model_dir) if model_dir else None, seed=seed,
    )  # fmt: skip
    return EvaluationDriver(
        runs, settings=settings, store=exp.out / "evaluation" / "results",
        figures_dir=exp.out / "evaluation" / "figures", log=log or exp.log,
        progress=exp.config.fit.get("progress", True) is not False, root=exp.out,
    )  # fmt: skip


def set_name(arm: str, seed: int) -> str:
    """The name of one arm's synthetic set at one seed in the evaluation outputs."""
    return f"{arm}@{seed}"


def evaluate_all(
    exp: Any, trained: Mapping[str, Mapping[int, Any]], generated: Mapping[str, Mapping[int, Any]]
) -> tuple[dict[str, Any], dict[str, Any], dict[int, Any]]:
    """Every evaluator on every arm's synthetic set at every seed.

    Returns:
        ``scores[evaluator][arm][seed] = metrics``; the diagnostics (placement statistics and
        crop fidelity per arm, over seeds); the driver of each seed (its classes and output
        folders write the report sections). At each seed the evaluators get that seed, so the
        arms of one seed share the bootstrap resamples of the held-out patches (paired
        comparisons) and the real-data DeepLabv3+ is trained once per seed.
    """
    from htd_core.dataset import Dataset

    real = list(exp.data.test) + list(exp.data.train)  # held-out first, marked split=test
    layouts = exp.layouts()
    scores: dict[str, dict[str, dict[int, Any]]] = {}
    drivers = {}
    placement: dict[str, list[dict[str, Any]]] = {}
    fidelity = []
    for seed in exp.config.seeds:
        from htd_plugins.experiment.arms import latent_arm

        # the autoencoder is shared: the first latent arm's model reconstructs with it
        model = trained[latent_arm(exp.config.arms, str(exp.config.source)).name][seed]["model_dir"]
        driver = drivers[seed] = evaluation_driver(exp, model, seed=seed)
        sets = {set_name(a, seed): list(Dataset(g[seed]["path"])) for a, g in generated.items()}
        keys = {set_name(a, seed): g[seed]["key"] for a, g in generated.items()}
        exp.log(f"evaluate@{seed}: {', '.join(r.name for r in driver.runs)} on "
                f"{len(next(iter(sets.values())))} synthetic patches per arm")  # fmt: skip
        out = driver.run(real, sets, real_key=exp.data_key, keys=keys, seed=seed)
        for ev, per_set in out.items():
            for a in generated:
                scores.setdefault(ev, {}).setdefault(a, {})[seed] = per_set[set_name(a, seed)]
        by_arm = {a: sets[set_name(a, seed)] for a in generated}
        for a, stats in placement_stats(layouts, by_arm).items():
            placement.setdefault(a, []).append(stats)
        fidelity.append(crop_fidelity(layouts, by_arm, exp.bank_path))
    diagnostics = {"placement": {a: pool_placement(v) for a, v in placement.items()},
                   "crop_fidelity": pool_fidelity(fidelity)}  # fmt: skip
    return scores, diagnostics, drivers


def crop_fidelity(
    layouts: Sequence[TissueSample], sets: Mapping[str, Sequence[TissueSample]],
    bank_path: str | Path | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Does the model use the crops? Mean absolute difference (0-255) between each
    conditioning crop and the generated pixels where the reference arm (``crop``, else the
    first arm with crops) placed it, for every arm at the same places (same layouts), beside
    the real layout's own tissue there (the same class in the real image: the natural
    variability, since a crop from outside the window is other tissue). A model that ignores
    the crops scores like the unconditional arm; pasting them gives 0. Crops are read from the
    bank (``bank_index``) or, for crops cut from the layout, from its image; a crop resized or
    trimmed when placed is skipped.

    Returns:
        ``{"arm": reference arm, "n_crops": N, "mae": {arm: value, "real_layout": value}}``.
    """
    from htd_plugins.condition_builders import CropBank, placed_crop

    bank = CropBank.load(bank_path) if bank_path and Path(bank_path).is_file() else None
    ref = "crop" if "crop" in sets else next((a for a in sets if _has_crops(sets[a])), None)
    errors: dict[str, list[float]] = {name: [] for name in sets}
    errors["real_layout"] = []
    for i, row in enumerate(sets[ref] if ref else []):
        prov = _provenance(row)
        if prov is None or i >= len(layouts):
            continue
        source = layouts[i].image
        for name, p in prov.items():
            crop = placed_crop(p, name, bank, source, layouts[i].meta.get("mpp"))
            if crop is None:
                continue
            px, py, d = int(p["placed_x"]), int(p["placed_y"]), len(crop)
            for arm, samples in sets.items():
                if i < len(samples):
                    region = samples[i].image[py : py + d, px : px + d].astype(np.float64)
                    errors[arm].append(float(np.abs(region - crop).mean()))
            errors["real_layout"].append(
                float(np.abs(source[py : py + d, px : px + d] - crop).mean())
            )
    return {
        "arm": ref,
        "n_crops": len(errors["real_layout"]),
        "mae": {k: round(float(np.mean(v)), 2) if v else None for k, v in errors.items()},
    }


def _provenance(row: TissueSample) -> Mapping[str, Any] | None:
    prov = row.meta.get("crop_provenance")
    prov = json.loads(prov) if isinstance(prov, str) and prov else prov
    return prov if isinstance(prov, Mapping) else None


def _has_crops(samples: Sequence[TissueSample]) -> bool:
    return bool(samples) and _provenance(samples[0]) is not None


def pool_placement(per_seed: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Placement statistics over seeds: counts summed, fractions and medians averaged."""
    out = dict(per_seed[0])
    for key in ("layouts", "crops"):
        out[key] = int(sum(p[key] for p in per_seed))
    for key in ("crops_per_layout", "classes_without_crop", "other_source", "overlapping_target",
                "median_side"):  # fmt: skip
        values = [p[key] for p in per_seed if p.get(key) is not None]
        out[key] = round(float(np.mean(values)), 3) if values else None
    return {**out, "seeds": len(per_seed)}


def pool_fidelity(per_seed: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Crop fidelity over seeds: mean of each arm's per-seed means, crops summed."""
    if not per_seed or not any(f["n_crops"] for f in per_seed):
        return {"n_crops": 0, "mae": {}}
    names = list(per_seed[0]["mae"])
    mae = {}
    for k in names:
        values = [f["mae"][k] for f in per_seed if f["mae"].get(k) is not None]
        mae[k] = round(float(np.mean(values)), 2) if values else None
    return {"arm": per_seed[0]["arm"], "n_crops": int(sum(f["n_crops"] for f in per_seed)),
            "seeds": len(per_seed), "mae": mae}  # fmt: skip


def placement_stats(
    layouts: Sequence[TissueSample], sets: Mapping[str, Sequence[TissueSample]]
) -> dict[str, dict[str, Any]]:
    """How each arm placed its crops, from the provenance its samples record: crops per
    layout, the fraction of the layouts' classes that got no crop, the median placed side (px),
    the fraction of crops from another source than the layout's, and the fraction that hold
    pixels of the layout's own window (a crop cut from the layout itself always does; 0 is
    what ``placement="outside"`` guarantees). Arms without crops are left out."""
    from htd_plugins.condition_builders import crop_overlaps_window

    out = {}
    for name, samples in sets.items():
        placed, empty, present, overlap, other = [], 0, 0, 0, 0
        for i, row in enumerate(samples):
            prov = row.meta.get("crop_provenance")
            prov = json.loads(prov) if isinstance(prov, str) and prov else prov
            if not isinstance(prov, Mapping) or i >= len(layouts):
                continue
            layout = layouts[i]
            for p in prov.values():
                if p is None:
                    continue
                present += 1
                if "placed_size" not in p:
                    empty += 1
                    continue
                placed.append(int(p["placed_size"]))
                overlap += crop_overlaps_window(p, layout.meta, layout.mask.shape[:2])
                other += str(p.get("slide_id", "")) != str(layout.meta.get("slide_id", ""))
        if present:
            n = max(len(placed), 1)
            out[name] = {"layouts": len(samples), "crops": len(placed),
                         "crops_per_layout": round(len(placed) / max(len(samples), 1), 3),
                         "classes_without_crop": round(empty / present, 3),
                         "median_side": float(np.median(placed)) if placed else None,
                         "other_source": round(other / n, 3), "overlapping_target": round(overlap / n, 3)}  # fmt: skip
    return out
