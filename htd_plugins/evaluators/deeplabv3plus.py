"""``deeplabv3plus``: the paper's downstream test, segmentation trained on synthetic data.

One evaluation trains the same DeepLabv3+ (same seed, steps, batch and input size; output
stride 8 and ImageNet encoder weights: :mod:`.segmentation.network`) on (a) the real training
images, (b) the synthetic images, (c) both, and scores each on held-out real images: per-class
IoU and Dice from one confusion matrix over all test pixels (as segmentation papers report
them), their means over the classes present, pixel accuracy, and a 95 % bootstrap interval of
mean IoU over the held-out images (:mod:`.segmentation.bootstrap`, :mod:`htd_core.bootstrap`). The gap to (a) says how
much the synthetic data is worth.

(c) sees every real patch exactly as often as (a): each of its batches is (a)'s batch (same
patches, same augmentation, drawn from the same random stream) plus as many synthetic patches
(:mod:`.segmentation.training`), so a drop is the synthetic data's doing, not fewer real
patches seen. (a) is the network trained on the real patches that ``layout_adherence`` also
uses, kept in ``cache_dir`` (:mod:`.segmentation.real_model`): trained once per run.

Held-out real images: see :mod:`.segmentation.base`. Synthetic samples whose layout or crops
come from a held-out source image are refused (they would put the test images into training),
unless ``allow_overlap`` is set, which records the overlap instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from htd_core import hookimpl
from htd_core.bootstrap import paired_interval
from htd_core.errors import InputError
from htd_core.interfaces.evaluator import ReportContext
from htd_core.leakage import find_overlap, refuse_overlap
from htd_plugins.evaluators.segmentation.base import SegmentationEvaluator, SegmentationOptions
from htd_plugins.evaluators.segmentation.training import predict, train_model

SETTINGS = ("real", "synthetic", "real+synthetic")


@dataclass(frozen=True)
class DeepLabOptions(SegmentationOptions):
    """:class:`SegmentationOptions` plus:

    Attributes:
        settings: which of ``real``, ``synthetic``, ``real+synthetic`` to train.
        allow_overlap: train on synthetic samples generated from held-out layouts or with
            held-out crops anyway (the result records the overlap) instead of refusing them.
    """

    settings: tuple[str, ...] = SETTINGS
    allow_overlap: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        given = (self.settings,) if isinstance(self.settings, str) else tuple(self.settings)
        bad = [s for s in given if s not in SETTINGS]
        if bad or not given:
            raise InputError(
                f"deeplabv3plus: settings {bad or '[]'} unknown; choose from {list(SETTINGS)}"
            )
        object.__setattr__(self, "settings", given)


class DeepLabV3PlusEvaluator(SegmentationEvaluator):
    """Mean IoU of DeepLabv3+ trained on real, synthetic and real+synthetic images.

    Options (keywords; :class:`DeepLabOptions`): ``budget`` (``tiny``, ``small``, ``paper``),
    ``steps``, ``input_size``, ``batch_size``, ``lr``, ``encoder``, ``output_stride``,
    ``pretrained`` over the budget's, ``settings``, ``test_fraction``, ``seed``, ``device``,
    ``augment``, ``allow_overlap``, ``cache_dir`` (where the ``real`` setting's network is
    kept, keyed by everything it depends on: scoring several synthetic sets trains it once),
    ``bootstrap`` (resamples of the held-out images; 0: no intervals).
    """

    name = "deeplabv3plus"
    Options = DeepLabOptions
    needs_masks = "DeepLabv3+ trains on image + mask pairs"

    def aggregate(self) -> dict[str, Any]:
        o = self.options
        train_idx, test_idx = self._split_real()
        self._check_real(
            train_idx, test_idx, "real" in o.settings or "real+synthetic" in o.settings
        )
        cm = self._class_map
        uses_synthetic = any("synthetic" in s for s in o.settings)
        overlap = None
        if uses_synthetic:
            self._check_synthetic()
            overlap = find_overlap(self._synthetic_sources, {self._real[i][2] for i in test_idx})
            if overlap and not o.allow_overlap:
                refuse_overlap("", overlap, len(self._synthetic), "deeplabv3plus training")
        test_images, test_masks = self.stack(test_idx)
        real = self.stack(train_idx) if train_idx else None
        synthetic = self.stack() if uses_synthetic else None
        parts = {"real": [real], "synthetic": [synthetic], "real+synthetic": [real, synthetic]}
        results: dict[str, Any] = {}
        for setting in o.settings:
            if setting == "real":
                model, info = self.real_network(real)
                loss = info["final_loss"]
            else:
                model, loss = train_model(
                    parts[setting], num_classes=len(cm), ignore_index=cm.ignore_index,
                    budget=self.budget, seed=o.seed, device=o.device, augment=o.augment,
                )  # fmt: skip
            preds = predict(model, test_images, device=o.device)
            results[setting] = {
                **self.score(preds, test_masks),
                "n_train": sum(len(p[0]) for p in parts[setting]),
                "batch": {name: self.budget.batch_size for name in setting.split("+")},
                "final_loss": loss,
            }
        train_masks = real[1] if real is not None else synthetic[1]
        out: dict[str, Any] = {
            "warnings": self.size_warnings() if uses_synthetic else [],
            "settings": results,
            "chance_mean_iou": self.chance(test_masks, train_masks),
            "classes": list(cm.names),
            "n_test": len(test_idx),
            "n_test_sources": len({self._real[i][2] for i in test_idx}),
            "budget": self.budget_record(),
            "n_bootstrap": o.bootstrap,
        }
        if overlap:
            out["overlap"] = overlap.to_dict()
        base = results.get("real", {}).get("mean_iou")
        for setting in ("synthetic", "real+synthetic"):
            other = results.get(setting, {}).get("mean_iou")
            if base is not None and other is not None:
                out[f"gap_{setting}_vs_real"] = other - base
                if "bootstrap" in results[setting] and "bootstrap" in results["real"]:
                    out[f"gap_{setting}_vs_real_ci"] = paired_interval(
                        results[setting]["bootstrap"]["mean_iou"],
                        results["real"]["bootstrap"]["mean_iou"],
                    )
        return out

    @classmethod
    def report_section(
        cls, results: Mapping[str, Mapping[str, Any]], context: ReportContext
    ) -> str:
        from htd_plugins.evaluators.segmentation.section import segmentation_section

        return segmentation_section(results, context)


@hookimpl
def htd_register_evaluators(registry) -> None:
    registry.register("deeplabv3plus", DeepLabV3PlusEvaluator)
