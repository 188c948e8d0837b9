"""The demo's evidence: Frechet distances under two real-weight encoders and a figure grid.

FD depends on the encoder, so the demo scores under every default encoder of the ``frechet``
evaluator (the FID Inception and ImageNet EfficientNet-Lite0, both shipped on PyPI), always
against the held-out real patches, with two reference rows beside the synthetic sets: real
training patches at the same N (what a good value looks like) and the held-out patches passed
through the model's own autoencoder (the floor: every generated image is decoded by it).
"""

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


#: Names of the reference rows in the demo's scores.
REAL_TRAIN, RECONSTRUCTION = "real_train_reference", "autoencoder_reconstruction"


def frechet_scores(
    test: Sequence[TissueSample],
    train: Sequence[TissueSample],
    sets: Mapping[str, Sequence[np.ndarray]],
    cache_dir: Path,
    model: Any = None,
) -> dict[str, Any]:
    """FD and KID of each image set against the held-out ``test`` patches, per encoder.

    Args:
        test: the held-out real patches (the reference).
        train: real training patches for the real-vs-real row (as many as each set is used).
        sets: name -> synthetic images.
        cache_dir: feature cache folder.
        model: a backbone (or saved pipeline folder) for the reconstruction row; None: none.

    Returns:
        ``{"encoders": {key: label}, "n_real": N, "sets": {name: {key: {"fd", "kid", "n"}}}}``
        with the reference rows :data:`REAL_TRAIN` and :data:`RECONSTRUCTION` among the sets.
    """
    from htd_core.plugins import create

    n = len(test)
    evaluator = create(
        "evaluators", "frechet", kid=True, kid_subset_size=max(2, n // 2), kid_subsets=50,
        cache_dir=cache_dir, model=model,
    )  # fmt: skip
    held_out = [
        TissueSample(s.image, s.mask, s.class_map, {**s.meta, "split": "test"}) for s in test
    ]
    real = held_out + list(train)
    mask = np.zeros(test[0].mask.shape, np.uint8)
    out: dict[str, Any] = {"encoders": {}, "n_real": n, "sets": {}}
    rows = out["sets"]
    for name, images in sets.items():
        synthetic = [TissueSample(np.asarray(im), mask, test[0].class_map, {}) for im in images]
        for key, enc in evaluator.evaluate(real, synthetic)["encoders"].items():
            out["encoders"][key] = enc["label"]
            rows.setdefault(name, {})[key] = {
                "fd": round(enc["fd"], 2), "kid": round(enc["kid"], 5), "n": enc["n_synthetic"],
            }  # fmt: skip
            for row, fd, count in (
                (REAL_TRAIN, "fd_real_train", "n_real_train"),
                (RECONSTRUCTION, "fd_reconstruction", "n_reconstruction"),
            ):
                if fd in enc:
                    rows.setdefault(row, {})[key] = {"fd": round(enc[fd], 2), "n": enc[count]}
    return out


def score_lines(scores: Mapping[str, Any]) -> list[str]:
    """The scores as text lines: one row per set (reference rows last), one column per encoder."""
    keys = list(scores["encoders"])
    width = max([len(k) for k in scores["sets"]] + [24])
    lines = [f"{'':{width}s} " + " ".join(f"{scores['encoders'][k]:>20s}" for k in keys)]
    for name, by_encoder in scores["sets"].items():
        cells = [by_encoder.get(k, {}).get("fd") for k in keys]
        lines.append(
            f"{name:{width}s} "
            + " ".join(f"{c:20.2f}" if c is not None else f"{'-':>20s}" for c in cells)
        )
    return lines


def save_figure(path: Path, rows: list[dict[str, np.ndarray]], scores: Mapping[str, Any]) -> Path:
    """Grid map | crops | synthetic | real | unconditional, titled with the FD numbers."""
    from htd_plugins.evaluators.reporting.figures import save_grid

    def fd(key: str, enc: str) -> str:
        value = scores["sets"].get(key, {}).get(enc, {}).get("fd")
        return f"{value:.1f}" if value is not None else "n/a"

    parts = [
        f"{enc}: crop-conditioned {fd('conditioned', enc)}, unconditional "
        f"{fd('unconditional', enc)}, real train {fd(REAL_TRAIN, enc)}, autoencoder "
        f"{fd(RECONSTRUCTION, enc)}"
        for enc in scores["encoders"]
    ]
    title = f"FD vs {scores.get('n_real')} held-out real patches; " + "; ".join(parts)
    return save_grid(path, rows, title=title, tile=1.5)
