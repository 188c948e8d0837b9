"""Bootstrap intervals of mean IoU over test images, from per-image confusion counts.

A score is computed from one confusion matrix over all test pixels (:mod:`.metrics`); a
resample of the test images (with replacement) is the sum of their K x K matrices, so B
resamples cost B small matrix sums, not B predictions (no retraining, no inference).

The resamples, their seeding contract (a function of the seed and the number of images only,
so two models scored on the same images get the same resamples and can be paired) and the
intervals are :mod:`htd_core.bootstrap`'s, the one place for them; the held-out images are
its stream 0, synthetic images stream 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from htd_core.bootstrap import interval, resample_counts


def image_confusions(
    predictions: torch.Tensor, labels: torch.Tensor, num_classes: int, ignore_index: int
) -> np.ndarray:
    """Per image, its K x K pixel counts (rows: label, columns: prediction), ignored pixels
    left out and predictions clamped to 0 .. K - 1 (as :class:`.metrics.ConfusionScores`):
    int64 N x K x K, whose sum over images is the test set's confusion matrix."""
    k = int(num_classes)
    n = int(labels.shape[0])
    target = labels.long().reshape(n, -1).cpu().numpy()
    preds = predictions.long().reshape(n, -1).cpu().numpy().clip(0, k - 1)
    image = np.broadcast_to(np.arange(n)[:, None], target.shape)
    keep = target != ignore_index
    flat = (image[keep] * k + target[keep]) * k + preds[keep]
    return np.bincount(flat, minlength=n * k * k).reshape(n, k, k).astype(np.int64)


def mean_iou(confusions: np.ndarray) -> np.ndarray:
    """Mean IoU (TP / (TP + FP + FN)) over the classes present in the labels of each
    ``... x K x K`` matrix (NaN where no pixel is labelled)."""
    c = confusions.astype(np.float64)
    tp = np.diagonal(c, axis1=-2, axis2=-1)
    labelled, predicted = c.sum(-1), c.sum(-2)
    present = labelled > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(present, tp / (labelled + predicted - tp), 0.0)
        return iou.sum(-1) / present.sum(-1)


def bootstrap_mean_iou(confusions: np.ndarray, seed: int, b: int, stream: int = 0) -> np.ndarray:
    """Mean IoU of ``b`` resamples (:func:`htd_core.bootstrap.resample_counts` of ``seed``,
    N and ``stream``) of the images of ``confusions`` (N x K x K): float64 ``b``."""
    n, k = confusions.shape[0], confusions.shape[-1]
    weights = resample_counts(seed, n, b, stream=stream)
    sums = weights.astype(np.float64) @ confusions.reshape(n, k * k).astype(np.float64)
    return mean_iou(sums.reshape(-1, k, k))


def to_json(samples: np.ndarray) -> list[float | None]:
    """Bootstrap samples as JSON numbers (None where undefined)."""
    return [float(v) if np.isfinite(v) else None for v in samples]


def with_interval(summary: dict[str, Any], confusions: np.ndarray, seed: int,
                  b: int, stream: int = 0) -> dict[str, Any]:  # fmt: skip
    """``summary`` (a :func:`.metrics.summarise` result) plus ``bootstrap: {"mean_iou": [b
    floats]}`` and ``mean_iou_ci: [lo, hi]`` over resamples of its images (unchanged when
    ``b`` is 0)."""
    if not b:
        return summary
    samples = bootstrap_mean_iou(confusions, seed, b, stream)
    return {
        **summary,
        "bootstrap": {"mean_iou": to_json(samples)},
        "mean_iou_ci": interval(samples),
    }
