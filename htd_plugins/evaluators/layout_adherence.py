"""``layout_adherence``: does the synthetic image show the layout it was generated from?

A DeepLabv3+ trained on the REAL training patches (never the held-out ones, never a synthetic
one) segments every synthetic image; its mean IoU against the mask the image was generated
from (the sample's ``mask``) is the **adherence**. The same network's mean IoU on the held-out
real patches is the **ceiling** (what the network achieves on real tissue whose mask is right),
and ``ratio = adherence / ceiling`` (1: the layout is as legible as in real tissue). A model
that ignores its layout scores about the **chance** mean IoU (class maps drawn per pixel from
the real training class frequencies, against the synthetic masks), reported beside it.

Each value has a 95 % bootstrap interval: the synthetic images are resampled for adherence, the
held-out images for the ceiling, the ratio pairs the two sample by sample; the resamples depend
only on ``(seed, number of images, stream)`` (:mod:`htd_core.bootstrap`), so arms generated
from the same layouts get the same resamples and can be compared pair by pair.

The network, its options (``budget``, ``steps``, ``input_size``, ... as ``deeplabv3plus``:
one :class:`~.segmentation.base.SegmentationOptions`) and its cache are those of
``deeplabv3plus``'s ``real`` setting (:mod:`.segmentation.real_model`): run both with the same
options and ``cache_dir`` and it is trained once for both evaluators and every synthetic set.
A synthetic set without masks is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from htd_core import hookimpl
from htd_core.bootstrap import interval
from htd_core.interfaces.evaluator import ReportContext
from htd_plugins.evaluators.segmentation.base import SegmentationEvaluator
from htd_plugins.evaluators.segmentation.bootstrap import to_json
from htd_plugins.evaluators.segmentation.training import predict


class LayoutAdherenceEvaluator(SegmentationEvaluator):
    """Mean IoU of a real-trained DeepLabv3+ on synthetic images against their layouts.

    Options (keywords; :class:`~.segmentation.base.SegmentationOptions`, those of
    ``deeplabv3plus`` less ``settings`` and ``allow_overlap``): ``budget``, ``steps``,
    ``input_size``, ``batch_size``, ``lr``, ``encoder``, ``output_stride``, ``pretrained``,
    ``test_fraction``, ``seed``, ``device``, ``augment``, ``cache_dir``, ``bootstrap``.
    """

    name = "layout_adherence"
    needs_masks = "adherence compares each image with the mask it was generated from"

    def aggregate(self) -> dict[str, Any]:
        o = self.options
        train_idx, test_idx = self._split_real()
        self._check_real(train_idx, test_idx, need_train=True)
        self._check_synthetic()
        real = self.stack(train_idx)
        model, info = self.real_network(real)
        test_images, test_masks = self.stack(test_idx)
        images, masks = self.stack()
        ceiling = self.score(predict(model, test_images, device=o.device), test_masks)
        adherence = self.score(predict(model, images, device=o.device), masks, stream=1)
        out: dict[str, Any] = {
            "warnings": self.size_warnings(),
            "adherence": {**adherence, "n": len(images)},
            "ceiling": {**ceiling, "n": len(test_images)},
            "ratio": _ratio(adherence["mean_iou"], ceiling["mean_iou"]),
            "chance_mean_iou": self.chance(masks, real[1]),
            "classes": list(self._class_map.names),
            "n_train": info["n_train"],
            "n_test_sources": len({self._real[i][2] for i in test_idx}),
            "final_loss": info["final_loss"],
            "budget": self.budget_record(),
            "n_bootstrap": o.bootstrap,
        }
        ratios = _ratios(adherence.get("bootstrap"), ceiling.get("bootstrap"))
        if ratios is not None:
            out["bootstrap"] = {"ratio": to_json(ratios)}
            out["ratio_ci"] = interval(ratios)
        return out

    @classmethod
    def report_section(
        cls, results: Mapping[str, Mapping[str, Any]], context: ReportContext
    ) -> str:
        from htd_plugins.evaluators.segmentation.section import adherence_section

        return adherence_section(results, context)


def _ratios(adherence: dict[str, Any] | None, ceiling: dict[str, Any] | None) -> np.ndarray | None:
    """Resample by resample adherence / ceiling (the synthetic and held-out images resampled
    independently, each by its own stream), NaN where undefined; None without samples."""
    if not adherence or not ceiling:
        return None
    a, c = (
        np.array([np.nan if v is None else v for v in r["mean_iou"]]) for r in (adherence, ceiling)
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        return a / c


def _ratio(adherence: float | None, ceiling: float | None) -> float | None:
    if adherence is None or not ceiling:
        return None
    return adherence / ceiling


@hookimpl
def htd_register_evaluators(registry) -> None:
    registry.register("layout_adherence", LayoutAdherenceEvaluator)
