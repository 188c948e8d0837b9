"""The demo's evidence: Frechet distances under the FID Inception and a figure grid."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from htd_core.types import Condition, TissueSample

EMPTY_GREY = 40  # crop view: pixels that hold no crop (validity 0)


def crop_view(condition: Condition, num_classes: int) -> np.ndarray:
    """The crops of a dual condition as one RGB image (dark where no crop is placed)."""
    rgb = condition.select("crop:").numpy().reshape(num_classes, 3, *condition.spatial.shape[1:])
    valid = condition.select("valid:").numpy()
    out = np.full((*condition.spatial.shape[1:], 3), EMPTY_GREY, np.float32)
    for k in range(num_classes):
        where = valid[k] > 0
        out[where] = ((rgb[k].transpose(1, 2, 0)[where] + 1) * 127.5).clip(0, 255)
    return out.round().astype(np.uint8)


def frechet_scores(
    real: Sequence[TissueSample], sets: Mapping[str, Sequence[np.ndarray]], cache_dir: Path
) -> dict[str, Any]:
    """FD and KID of each image set against ``real`` under ``inception_fid`` (``frechet``
    evaluator; real features cached between sets)."""
    from htd_core.plugins import create

    n = len(real)
    evaluator = create(
        "evaluators", "frechet", encoders=["inception_fid"], kid=True,
        kid_subset_size=max(2, n // 2), kid_subsets=50, cache_dir=cache_dir,
    )  # fmt: skip
    mask = np.zeros(real[0].mask.shape, np.uint8)
    out: dict[str, Any] = {"encoder": None, "n_real": n}
    for name, images in sets.items():
        synthetic = [TissueSample(np.asarray(im), mask, real[0].class_map, {}) for im in images]
        metrics = evaluator.evaluate(real, synthetic)
        enc = metrics["encoders"]["inception_fid"]
        out["encoder"] = enc["label"]
        out[name] = {
            "fd": round(enc["fd"], 2),
            "kid": round(enc["kid"], 5),
            "n": enc["n_synthetic"],
        }
    return out


def save_figure(path: Path, rows: list[dict[str, np.ndarray]], scores: Mapping[str, Any]) -> Path:
    """Grid map | crops | synthetic | real | unconditional, titled with the FD numbers."""
    from htd_plugins.evaluators.reporting.figures import save_grid

    def fd(key: str) -> str:
        return f"{scores[key]['fd']:.1f}" if key in scores else "n/a"

    title = (
        f"FD (inception_fid, n={scores.get('n_real')}) vs held-out real: crop-conditioned "
        f"{fd('conditioned')}, unconditional {fd('unconditional')}, real train patches {fd('real_train_reference')}"
    )
    return save_grid(path, rows, title=title, tile=1.5)
