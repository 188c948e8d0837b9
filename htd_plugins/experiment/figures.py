"""The pictures of an experiment run: ``figure.png`` (map | crops | one column per arm |
autoencoder round trips | real) and ``evaluation/report.md`` (every evaluator's own section)."""

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


def write_figure(exp: Any, path: Path, n: int | None = None) -> Path | None:
    """Map | crops | one column per arm | each autoencoder's round trip of the real patch |
    real, for the first ``n`` layouts (default: the file's ``figure.rows``, else 8), at the
    first seed.

    The round-trip columns show what the decoder alone keeps of real tissue (every generated
    image passes through it): the run's own autoencoder (``OUT/autoencoder``), then each
    folder of the file's ``figure.autoencoders`` (label -> folder, e.g. TAEF2's weights),
    calibrated on the training patches.
    """
    from htd_core.dataset import Dataset
    from htd_plugins.condition_builders import crop_view
    from htd_plugins.evaluators import save_grid
    from htd_plugins.experiment.arms import arm_folder

    seed = exp.config.seed
    n = n or int(exp.config.figure.get("rows", 8))
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
    trips = round_trips(exp, [layout.image for layout in layouts])
    rows = []
    for i, layout in enumerate(layouts):
        row = {"map": layout.class_map.colorize(layout.mask)}
        if views:
            row["crops"] = views[i]
        for a in arms:
            row[a] = sets[a][i].image if i < len(sets[a]) else None
        for label, images in trips.items():
            row[label] = images[i]
        row["real"] = layout.image
        rows.append(row)
    return save_grid(
        path,
        rows,
        title=f"{exp.config.name}: training layouts, each arm (seed {seed}), round trips, real",
        tile=1.4,
    )


def round_trips(exp: Any, images: list[Any]) -> dict[str, Any]:
    """Column label -> ``images`` (uint8 H x W x 3, the model size) encoded and decoded by the
    run's autoencoder and by each of ``figure.autoencoders`` (calibrated on the training
    patches). Empty when the run has no autoencoder folder (a pixel-space or training-free run).

    Raises:
        InputError: a ``figure.autoencoders`` folder that holds no autoencoder.
    """
    import numpy as np

    from htd_plugins.backbones import calibrate, load_autoencoder

    folders = {}
    if (exp.out / "autoencoder" / "config.json").is_file():
        folders["autoencoder (round trip)"] = exp.out / "autoencoder"
    folders.update({str(k): v for k, v in exp.config.figure.get("autoencoders", {}).items()})
    if not folders or not images:
        return {}
    batch = np.stack(images)
    train = np.stack([s.image for s in exp.data.train])
    out = {}
    for label, folder in folders.items():
        ae = load_autoencoder(folder).frozen("cpu")
        if label != "autoencoder (round trip)":
            calibrate(ae, train)
        out[label] = ae.reconstruct(batch)
    return out


def _builder_names(arm: Any) -> list[str]:
    return [b if isinstance(b, str) else str(b.get("name")) for b in arm.builders]
