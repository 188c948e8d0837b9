"""The pictures of an experiment run: ``figure.png`` (map | crops | one column per arm |
real) and ``evaluation/report.md`` (every evaluator's own section)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


def write_evaluation_report(
    exp: Any, results: Mapping[str, Any], drivers: Mapping[int, Any]
) -> Path:
    """``OUT/evaluation/report.md`` + ``metrics.json``: every evaluator's own section of every
    arm and seed (sets named ``<arm>@<seed>``), written by ``htd evaluate``'s report
    (:func:`htd_plugins.evaluation.write_report`)."""
    from htd_core.dataset import Dataset
    from htd_plugins.evaluation import write_report
    from htd_plugins.experiment.measure import set_name

    gens = {set_name(a, s): g for a, per in results["generated"].items() for s, g in per.items()}
    sets = {name: Dataset(g["path"]) for name, g in gens.items()}
    scores = {ev: {set_name(a, s): m for a, per in arms.items() for s, m in per.items()}
              for ev, arms in results["scores"].items()}  # fmt: skip
    first = next(iter(drivers.values()))
    output_dirs: dict[str, dict[str, Path]] = {}
    for d in drivers.values():
        for ev, per_set in d.output_dirs().items():
            output_dirs.setdefault(ev, {}).update(per_set)
    real = list(exp.data.test) + list(exp.data.train)
    inputs = {"real": f"{len(exp.data.train)} training + {len(exp.data.test)} held-out patches "
              f"({results['data']})", "n_real": len(real),
              "synthetic": {n: {"path": g["path"], "n": g["n"]} for n, g in gens.items()},
              "evaluators": [r.name for r in first.runs], "seeds": results["seeds"],
              "options": first.resolved_options()}  # fmt: skip
    folder = exp.out / "evaluation"
    write_report(folder, scores, inputs=inputs, real=real, synthetic=sets,
                 evaluators=first.classes(), output_dirs=output_dirs)  # fmt: skip
    return folder / "report.md"


def write_figure(exp: Any, path: Path, n: int = 8) -> Path | None:
    """Map | crops | one column per arm | real, for the first ``n`` layouts, at the first
    seed."""
    from htd_core.dataset import Dataset
    from htd_plugins.condition_builders import crop_view
    from htd_plugins.evaluators import save_grid
    from htd_plugins.experiment.arms import arm_folder

    seed = exp.config.seed
    layouts = exp.layouts()[:n]
    arms = [a.name for a in exp.config.arms]
    sets = {a: Dataset(arm_folder(exp.out, a, seed) / "synthetic") for a in arms}
    crop_arm = next((a for a in exp.config.arms if "crop" in _builder_names(a)), None)
    views = []
    if crop_arm is not None:
        from htd_core.pipeline import Pipeline

        pipe = Pipeline.from_pretrained(
            arm_folder(exp.out, crop_arm.name, seed) / "train" / "model"
        )
        conds = pipe.build_conditions(layouts, seed=seed)
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
        path,
        rows,
        title=f"{exp.config.name}: training layouts, each arm (seed {seed}), real",
        tile=1.4,
    )


def _builder_names(arm: Any) -> list[str]:
    return [b if isinstance(b, str) else str(b.get("name")) for b in arm.builders]
