"""``deeplabv3plus``: the paper's downstream test, segmentation trained on synthetic data.

One evaluation trains the same DeepLabv3+ (same seed, steps, batch and input size) on
(a) the real training images, (b) the synthetic images, (c) both, and scores each on held-out
real images: per-class IoU and Dice from one confusion matrix over all test pixels (as
segmentation papers report them), their means over the classes present, and pixel accuracy.
The gap to (a) says how much the synthetic data is worth. See :mod:`.segmentation.training`
for the model and losses, :mod:`.segmentation.metrics` for the metrics (MONAI's confusion-matrix
metric).

Held-out real images: real samples whose ``meta["split"]`` is ``"test"`` when any sample has a
split, otherwise a random ``test_fraction`` of the real *source images* (tiles of one image
never straddle train and test; :func:`htd_core.splits.split_by_source`). Synthetic samples
whose layout or crops come from a held-out source image are refused (they would put the test
images into training), unless ``allow_overlap`` is set, which records the overlap instead.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from htd_core import ClassMap, Evaluator, TissueSample, hookimpl
from htd_core.errors import InputError
from htd_core.interfaces.evaluator import ReportContext
from htd_core.io import atomic_write_json
from htd_core.leakage import find_overlap, refuse_overlap, row_sources
from htd_core.options import preset
from htd_core.splits import layout_source, partition, split_by_source
from htd_plugins.evaluators.segmentation.metrics import score_predictions, summarise
from htd_plugins.evaluators.segmentation.training import (
    BUDGETS,
    chance_predictions,
    check_encoder,
    predict,
    resize_pair,
    train_model,
)

SETTINGS = ("real", "synthetic", "real+synthetic")
_NO_MASKS = (
    "deeplabv3plus: the synthetic set has no masks (no masks/ folder, or every mask pixel is the "
    "ignore index): DeepLabv3+ trains on image + mask pairs; evaluate a set written by "
    "`htd generate` from semantic maps (it writes masks/), or drop this evaluator"
)


class DeepLabV3PlusEvaluator(Evaluator):
    """Mean IoU of DeepLabv3+ trained on real, synthetic and real+synthetic images.

    Args:
        budget: preset name in :data:`BUDGETS` (``tiny``, ``small``, ``paper``).
        steps, input_size, batch_size, lr: override the preset's values.
        encoder: segmentation-models-pytorch encoder name overriding the preset's;
            ``tu-<timm name>`` is a timm model (always randomly initialised: offline).
        settings: which of ``real``, ``synthetic``, ``real+synthetic`` to train.
        test_fraction: share of real source images held out when no ``split`` meta is given.
        seed: seed of the split, the initialisation and the batches.
        device: torch device.
        augment: random flips and 90-degree rotations during training.
        allow_overlap: train on synthetic samples generated from held-out layouts or with
            held-out crops anyway (the result records the overlap) instead of refusing them.
        cache_dir: folder where the ``real`` setting's result is kept, keyed by everything it
            depends on (the real images and masks, the budget, seed, device, augmentation):
            it does not depend on the synthetic set, so scoring several synthetic sets trains
            it once (None: no cache).
    """

    name = "deeplabv3plus"

    def __init__(
        self,
        budget: str = "small",
        steps: int | None = None,
        input_size: int | None = None,
        batch_size: int | None = None,
        lr: float | None = None,
        encoder: str | None = None,
        settings: Sequence[str] = SETTINGS,
        test_fraction: float = 0.25,
        seed: int = 0,
        device: str = "cpu",
        augment: bool = True,
        allow_overlap: bool = False,
        cache_dir: str | Path | None = None,
    ) -> None:
        given = {"steps": steps, "input_size": input_size, "batch_size": batch_size, "lr": lr,
                 "encoder": encoder}  # fmt: skip
        self.budget = preset(BUDGETS, budget, {k: v for k, v in given.items() if v is not None},
                             "deeplabv3plus budget")  # fmt: skip
        check_encoder(self.budget.encoder)
        self.settings = (settings,) if isinstance(settings, str) else tuple(settings)
        bad = [s for s in self.settings if s not in SETTINGS]
        if bad or not self.settings:
            raise InputError(
                f"deeplabv3plus: settings {bad or '[]'} unknown; choose from {list(SETTINGS)}"
            )
        if not 0.0 < test_fraction < 1.0:
            raise InputError(f"deeplabv3plus: test_fraction={test_fraction}; use a value in (0, 1)")
        self.test_fraction = float(test_fraction)
        self.seed, self.device, self.augment = int(seed), device, bool(augment)
        self.budget_name, self.allow_overlap = budget, bool(allow_overlap)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.reset()

    def reset(self) -> None:
        self._class_map: ClassMap | None = None
        self._real: list[tuple[np.ndarray, np.ndarray, str, str]] = []  # image, mask, source, split
        self._synthetic: list[tuple[np.ndarray, np.ndarray]] = []
        self._synthetic_sources: list[dict[str, Any]] = []  # layout + crop source ids

    def _check_classes(self, sample: TissueSample, what: str) -> None:
        if sample.image is None:
            raise InputError(f"deeplabv3plus: a {what} sample has no image (a layout)")
        if self._class_map is None:
            self._class_map = sample.class_map
        elif sample.class_map.names != self._class_map.names:
            raise InputError(
                f"deeplabv3plus: {what} sample classes {list(sample.class_map.names)} differ from "
                f"{list(self._class_map.names)}: real and synthetic sets must share one class list"
            )
        sample.class_map.check_mask(
            sample.mask, f"{what} mask ({sample.meta.get('slide_id', '?')})"
        )

    def update(
        self,
        *,
        real: Sequence[TissueSample] | None = None,
        synthetic: Sequence[TissueSample] | None = None,
    ) -> None:
        size = self.budget.input_size
        for s in real or ():
            self._check_classes(s, "real")
            image, mask = resize_pair(s.image, s.mask, size)
            split = str(s.meta.get("split", "")).lower()
            self._real.append((image, mask, layout_source(s.meta) or f"#{len(self._real)}", split))
        for s in synthetic or ():
            if s.meta.get("mask") == "none":
                raise InputError(_NO_MASKS)
            self._check_classes(s, "synthetic")
            self._synthetic.append(resize_pair(s.image, s.mask, size))
            layout, crops = row_sources(s.meta)
            self._synthetic_sources.append({"layout_source_id": layout, "crop_source_ids": crops})

    def _split_real(self) -> tuple[list[int], list[int]]:
        splits = [r[3] for r in self._real]
        if any(splits):
            test = [i for i, s in enumerate(splits) if s == "test"]
            train = [i for i, s in enumerate(splits) if s != "test"]
        else:
            train, test = split_by_source([r[2] for r in self._real], self.test_fraction, self.seed)
        return train, test

    def aggregate(self) -> dict[str, Any]:
        if not self._real or self._class_map is None:
            raise InputError(
                "deeplabv3plus: no real samples were given; it tests on held-out real data"
            )
        cm, ignore = self._class_map, self._class_map.ignore_index
        train_idx, test_idx = self._split_real()
        if not test_idx:
            raise InputError(
                "deeplabv3plus: no held-out real samples (every real sample has split=train)"
            )
        uses_synthetic = any("synthetic" in s for s in self.settings)
        if uses_synthetic:
            if not self._synthetic:
                raise InputError(
                    f"deeplabv3plus: settings {list(self.settings)} need synthetic samples but none "
                    "were given (an empty set?)"
                )
            if all((m == ignore).all() for _, m in self._synthetic):
                raise InputError(_NO_MASKS)
            overlap = find_overlap(self._synthetic_sources, {self._real[i][2] for i in test_idx})
            if overlap and not self.allow_overlap:
                refuse_overlap("", overlap, len(self._synthetic), "deeplabv3plus training")
        if "real" in self.settings or "real+synthetic" in self.settings:
            if not train_idx:
                raise InputError(
                    "deeplabv3plus: every real sample is held out; none left to train on"
                )
        real_train = partition(self._real, train_idx)
        real_test = partition(self._real, test_idx)
        test_images = np.stack([r[0] for r in real_test])
        test_labels = torch.from_numpy(np.stack([r[1] for r in real_test]).astype(np.int64))
        sets = {
            "real": [(r[0], r[1]) for r in real_train],
            "synthetic": self._synthetic,
            "real+synthetic": [(r[0], r[1]) for r in real_train] + self._synthetic,
        }
        results: dict[str, Any] = {}
        for setting in self.settings:
            pairs = sets[setting]
            cached = (
                self._cache_path(sets["real"], test_images, test_labels)
                if setting == "real"
                else None
            )
            if cached is not None and cached.is_file():
                results[setting] = json.loads(cached.read_text())
                continue
            model, loss = train_model(
                np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]),
                num_classes=len(cm), ignore_index=ignore, budget=self.budget,
                seed=self.seed, device=self.device, augment=self.augment,
            )  # fmt: skip
            preds = predict(model, test_images, device=self.device)
            scores = score_predictions(preds, test_labels, num_classes=len(cm), ignore_index=ignore)
            results[setting] = {
                **summarise(scores, cm.names),
                "n_train": len(pairs),
                "final_loss": loss,
            }
            if cached is not None:
                atomic_write_json(cached, results[setting])
        chance = summarise(
            score_predictions(
                chance_predictions(test_labels, _frequencies(sets, len(cm), ignore), self.seed),
                test_labels, num_classes=len(cm), ignore_index=ignore,
            ),
            cm.names,
        )  # fmt: skip
        out: dict[str, Any] = {
            "settings": results,
            "chance_mean_iou": chance["mean_iou"],
            "classes": list(cm.names),
            "n_test": len(test_idx),
            "n_test_sources": len({r[2] for r in real_test}),
            "budget": {"name": self.budget_name, **vars(self.budget)},
        }
        if uses_synthetic and overlap:
            out["overlap"] = overlap.to_dict()
        base = results.get("real", {}).get("mean_iou")
        for setting in ("synthetic", "real+synthetic"):
            other = results.get(setting, {}).get("mean_iou")
            if base is not None and other is not None:
                out[f"gap_{setting}_vs_real"] = other - base
        return out

    def _cache_path(self, train: list, test_images: np.ndarray, test_labels: Any) -> Path | None:
        """``cache_dir/deeplabv3plus-real-<key>.json``: the key hashes every input of the
        ``real`` setting (None without a cache)."""
        if self.cache_dir is None:
            return None
        h = hashlib.sha256(json.dumps([
            "deeplabv3plus-real-1", vars(self.budget), self.seed, str(self.device), self.augment,
            list(self._class_map.names), self._class_map.ignore_index,
        ], sort_keys=True, default=str).encode())  # fmt: skip
        for image, mask in train:
            h.update(np.ascontiguousarray(image).tobytes() + np.ascontiguousarray(mask).tobytes())
        h.update(np.ascontiguousarray(test_images).tobytes())
        h.update(test_labels.numpy().tobytes())
        return self.cache_dir / f"deeplabv3plus-real-{h.hexdigest()[:24]}.json"

    @classmethod
    def report_section(
        cls, results: Mapping[str, Mapping[str, Any]], context: ReportContext
    ) -> str:
        from htd_plugins.evaluators.segmentation.section import segmentation_section

        return segmentation_section(results, context)


def _frequencies(sets: dict[str, list], k: int, ignore: int) -> np.ndarray:
    """Class frequencies of the real training masks (else the synthetic ones), for chance."""
    pairs = sets["real"] or sets["synthetic"]
    counts = np.zeros(k)
    for _, m in pairs:
        v = m[m != ignore]
        counts += np.bincount(v.ravel(), minlength=k)[:k]
    return counts / counts.sum() if counts.sum() else np.full(k, 1.0 / k)


@hookimpl
def htd_register_evaluators(registry) -> None:
    registry.register("deeplabv3plus", DeepLabV3PlusEvaluator)
