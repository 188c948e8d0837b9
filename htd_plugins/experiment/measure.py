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


def device() -> str:
    """Where evaluators run: a GPU when there is one."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def evaluation_driver(exp: Any, model_dir: str | Path | None = None, log: Any = None) -> Any:
    """The driver of the experiment's evaluators (see the module docstring)."""
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
        device=device(), encoders=tuple(exp.config.encoders), cache_dir=exp.out / "cache",
        model=Path(model_dir) if model_dir else None, seed=exp.config.seed,
    )  # fmt: skip
    return EvaluationDriver(
        runs, settings=settings, store=exp.out / "evaluation" / "results",
        figures_dir=exp.out / "evaluation" / "figures", log=log or exp.log,
    )  # fmt: skip


def evaluate_all(
    exp: Any,
    trained: Mapping[str, Any],
    generated: Mapping[str, Any],
    sets: Mapping[str, Sequence[TissueSample]],
) -> tuple[dict[str, Any], Any]:
    """``scores[evaluator][arm] = metrics`` of every arm's synthetic samples (``sets``), and
    the driver (its classes and output folders write the report sections)."""
    model = next(iter(trained.values()))["model_dir"]  # any arm: the autoencoder is shared
    driver = evaluation_driver(exp, model)
    real = list(exp.data.test) + list(exp.data.train)  # held-out first, marked split=test
    for name in sets:
        exp.log(f"evaluate:{name}: {', '.join(r.name for r in driver.runs)} on "
                f"{len(sets[name])} synthetic patches")  # fmt: skip
    scores = driver.run(
        real, sets, real_key=exp.data_key, keys={a: g["key"] for a, g in generated.items()},
        seed=exp.config.seed,
    )  # fmt: skip
    return scores, driver


def crop_fidelity(
    layouts: Sequence[TissueSample], sets: Mapping[str, Sequence[TissueSample]]
) -> dict[str, Any]:
    """Does the model use the crops? Mean absolute difference (0-255) between each
    conditioning crop and the generated pixels where the ``crop`` arm placed it, for every
    arm at the same places (same layouts and seeds), beside the real layout's own tissue
    there (same class, other pixels: the natural variability). A model that ignores the crops
    scores like the unconditional arm; copying them gives 0.

    Returns:
        ``{"n_crops": N, "mae": {arm: value, "real_layout": value}}``.
    """
    errors: dict[str, list[float]] = {name: [] for name in sets}
    errors["real_layout"] = []
    for i, row in enumerate(sets["crop"]):
        prov = row.meta.get("crop_provenance")
        prov = json.loads(prov) if isinstance(prov, str) and prov else prov
        if not isinstance(prov, Mapping) or i >= len(layouts):
            continue
        source = layouts[i].image
        for p in prov.values():
            if not isinstance(p, Mapping) or p.get("source") != "sample":
                continue
            x, y, d = int(p["x"]), int(p["y"]), int(p["size"])
            px, py, pd = int(p["placed_x"]), int(p["placed_y"]), int(p["placed_size"])
            if pd != d:
                continue
            crop = source[y : y + d, x : x + d].astype(np.float64)
            for name, samples in sets.items():
                if i < len(samples):
                    region = samples[i].image[py : py + d, px : px + d].astype(np.float64)
                    errors[name].append(float(np.abs(region - crop).mean()))
            errors["real_layout"].append(
                float(np.abs(source[py : py + d, px : px + d] - crop).mean())
            )
    return {
        "n_crops": len(errors["real_layout"]),
        "mae": {k: round(float(np.mean(v)), 2) if v else None for k, v in errors.items()},
    }


def crop_view(condition: Any, num_classes: int, empty: int = 40) -> np.ndarray:
    """The crops of a dual condition as one RGB image (grey ``empty`` where none is placed)."""
    rgb = condition.select("crop:").numpy().reshape(num_classes, 3, *condition.spatial.shape[1:])
    valid = condition.select("valid:").numpy()
    out = np.full((*condition.spatial.shape[1:], 3), empty, np.float32)
    for k in range(num_classes):
        where = valid[k] > 0
        out[where] = ((rgb[k].transpose(1, 2, 0)[where] + 1) * 127.5).clip(0, 255)
    return out.round().astype(np.uint8)
