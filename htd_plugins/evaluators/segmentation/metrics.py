"""Segmentation scores of the ``deeplabv3plus`` evaluator, from one confusion matrix over all
test pixels (as segmentation papers report them; a per-image mean over the images that contain
a class would hide false positives on images that lack it).

Per class, MONAI's confusion-matrix metric (``monai.metrics.confusion_matrix``) counts
TP / FP / TN / FN (``get_confusion_matrix``) and turns them into IoU, its "threat score"
``TP / (TP + FP + FN)``, and Dice, its "f1 score" ``2 TP / (2 TP + FP + FN)``
(``compute_confusion_matrix_metric``). The counts are summed here in float64 over chunks of
:data:`CHUNK` pixels: ``ConfusionMatrixMetric.aggregate`` sums its buffer in float32, which stops
counting exactly past 2**24 pixels of a class. Pixels labelled the ignore index are dropped
before counting, so they are neither a label nor a prediction of any class. The K x K matrix
of the report (label -> prediction), which MONAI does not give, is a bincount of the same
pixels.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

#: Pixels per call of MONAI's counter: its float32 counts are exact below 2**24, and the one-hot
#: K x CHUNK int64 inputs stay small (8 MiB per class).
CHUNK = 2**20


class ConfusionScores:
    """Confusion counts accumulated over all test pixels: ``update`` per batch, ``aggregate``
    for the scores, ``reset`` to forget (the shape of MONAI's ``Cumulative`` metrics).

    Args:
        num_classes: K; class indices are 0 .. K - 1.
        ignore_index: label of pixels that count for nothing (any value outside 0 .. K - 1).
    """

    def __init__(self, num_classes: int, ignore_index: int) -> None:
        self.num_classes, self.ignore_index = int(num_classes), int(ignore_index)
        self.reset()

    def reset(self) -> None:
        k = self.num_classes
        self._counts = torch.zeros(k, 4, dtype=torch.float64)  # TP, FP, TN, FN per class
        self._confusion = torch.zeros(k, k, dtype=torch.int64)

    def update(self, predictions: torch.Tensor, labels: torch.Tensor) -> None:
        """Add one batch: integer class maps N x H x W (predictions are clamped to 0 .. K - 1)
        and integer labels N x H x W (0 .. K - 1 or the ignore index).

        Raises:
            ValueError: a label is neither a class index nor the ignore index.
        """
        from monai.metrics.confusion_matrix import get_confusion_matrix

        k = self.num_classes
        target = labels.long().reshape(-1).cpu()
        keep = target != self.ignore_index
        target = target[keep]
        preds = predictions.long().reshape(-1).cpu()[keep].clamp(0, k - 1)
        bad = target[(target < 0) | (target >= k)]
        if bad.numel():
            raise ValueError(
                f"labels {sorted(set(bad.unique().tolist()))[:8]} are neither class indices "
                f"0..{k - 1} nor the ignore index {self.ignore_index}"
            )
        self._confusion += torch.bincount(target * k + preds, minlength=k * k).reshape(k, k)
        for start in range(0, target.numel(), CHUNK):
            # one-hot 1 x K x P, the layout MONAI expects (batch, class channel, pixels)
            y = torch.nn.functional.one_hot(target[start : start + CHUNK], k).T[None]
            y_pred = torch.nn.functional.one_hot(preds[start : start + CHUNK], k).T[None]
            self._counts += get_confusion_matrix(y_pred, y)[0].double()

    def aggregate(self) -> dict[str, Any]:
        """Scores of every pixel given so far.

        Returns:
            ``iou`` and ``dice``: per class (K floats), MONAI's threat score and f1 score of the
            summed counts, None for a class absent from the labels (MONAI gives 0.0 when such a
            class was predicted and NaN when it was not: neither is a score of the class);
            ``pixel_accuracy``: correct / labelled pixels (sum of TP over all labelled pixels;
            None when no pixel is labelled); ``confusion``: K x K pixel counts (rows: label,
            columns: prediction); ``present``: whether each class occurs in the labels.
        """
        from monai.metrics.confusion_matrix import compute_confusion_matrix_metric

        tp, fn = self._counts[:, 0], self._counts[:, 3]
        present = (tp + fn > 0).tolist()
        out: dict[str, Any] = {}
        for key, monai_name in (("iou", "threat score"), ("dice", "f1 score")):
            values = compute_confusion_matrix_metric(monai_name, self._counts).tolist()
            out[key] = [float(v) if p else None for v, p in zip(values, present, strict=True)]
        labelled = float((tp + fn).sum())
        out["pixel_accuracy"] = float(tp.sum()) / labelled if labelled else None
        out["confusion"] = self._confusion.tolist()
        out["present"] = present
        return out


def score_predictions(
    predictions: torch.Tensor, labels: torch.Tensor, *, num_classes: int, ignore_index: int
) -> dict[str, Any]:
    """Scores of class-index maps N x H x W (any integer dtype) against labels N x H x W from
    one confusion matrix over all pixels (pixels labelled ``ignore_index`` are left out).

    Returns:
        What :meth:`ConfusionScores.aggregate` returns: per-class ``iou`` = TP / (TP + FP + FN)
        and ``dice`` = 2 TP / (2 TP + FP + FN) over the whole test set (None for a class
        absent from the labels), ``pixel_accuracy``, ``confusion`` (K x K) and ``present``.
    """
    scores = ConfusionScores(num_classes, ignore_index)
    scores.update(predictions, labels)
    return scores.aggregate()


def summarise(scores: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """Per-class dicts, their means over the classes present in the test labels, pixel
    accuracy and the confusion matrix (label -> prediction -> pixels)."""
    out: dict[str, Any] = {}
    for key in ("iou", "dice"):
        present = [v for v in scores[key] if v is not None]
        out[f"mean_{key}"] = float(np.mean(present)) if present else None
        out[key] = dict(zip(names, scores[key], strict=True))
    out["pixel_accuracy"] = scores["pixel_accuracy"]
    out["confusion"] = {
        label: dict(zip(names, row, strict=True))
        for label, row in zip(names, scores["confusion"], strict=True)
    }
    return out
