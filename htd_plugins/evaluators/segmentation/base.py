"""What the segmentation evaluators (``deeplabv3plus``, ``layout_adherence``) share: their
options, the collection of real and synthetic samples, the held-out split, the real network
(:mod:`.real_model`) and scoring with bootstrap intervals (:mod:`.bootstrap`).

Held-out real images: real samples whose ``meta["split"]`` is ``"test"`` when any sample has a
split, otherwise a random ``test_fraction`` of the real *source images* (tiles of one image
never straddle train and test; :func:`htd_core.splits.split_by_source`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from htd_core import ClassMap, Evaluator, TissueSample
from htd_core.errors import InputError
from htd_core.leakage import row_sources
from htd_core.options import check_int, make_options, preset
from htd_core.splits import layout_source, split_by_source
from htd_plugins.evaluators.segmentation.training import BUDGETS, Budget, resize_pair

_NO_MASKS = (
    "{name}: the synthetic set has no masks (no masks/ folder, or every mask pixel is the "
    "ignore index): {why}; evaluate a set written by `htd generate` from semantic maps (it "
    "writes masks/), or drop this evaluator"
)


@dataclass(frozen=True)
class SegmentationOptions:
    """Options of the segmentation evaluators (one declaration, :mod:`htd_core.options`).

    Attributes:
        budget: network budget preset (:data:`.training.BUDGETS`: ``tiny``, ``small``,
            ``paper``).
        steps, input_size, batch_size, lr, encoder, output_stride, pretrained: override the
            preset's values (:class:`.training.Budget`).
        test_fraction: share of real source images held out when no ``split`` meta is given.
        seed: seed of the split, the initialisation, the batches and the bootstrap.
        device: torch device.
        augment: random flips and 90-degree rotations during training.
        cache_dir: where the network trained on the real patches is kept (:mod:`.real_model`;
            None: no cache).
        bootstrap: resamples of the test images for the 95 % intervals (0: none).
    """

    budget: str = "small"
    steps: int | None = None
    input_size: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    encoder: str | None = None
    output_stride: int | None = None
    pretrained: bool | None = None
    test_fraction: float = 0.25
    seed: int = 0
    device: str = "cpu"
    augment: bool = True
    cache_dir: str | Path | None = None
    bootstrap: int = 200

    def __post_init__(self) -> None:
        if not 0.0 < self.test_fraction < 1.0:
            raise InputError(f"test_fraction={self.test_fraction}; use a value in (0, 1)")
        check_int(self.bootstrap, "bootstrap", 0)

    def network(self) -> Budget:
        """The preset with the options given over it."""
        fields = ("steps", "input_size", "batch_size", "lr", "encoder", "output_stride",
                  "pretrained")  # fmt: skip
        given = {k: getattr(self, k) for k in fields if getattr(self, k) is not None}
        return preset(BUDGETS, self.budget, given, "deeplabv3plus budget")


class SegmentationEvaluator(Evaluator):
    """Base of the segmentation evaluators: collects samples (resized to the network's
    input), splits the real ones, trains or loads the real network, scores predictions."""

    Options = SegmentationOptions
    #: Why synthetic masks are needed (the refusal's middle).
    needs_masks = "it needs image + mask pairs"

    def __init__(self, **options: Any) -> None:
        from htd_plugins.evaluators.segmentation.network import check_encoder

        try:
            self.options = make_options(self.Options, options, self.name)
            self.budget = self.options.network()
            check_encoder(self.budget.encoder, self.budget.pretrained)
        except InputError as exc:
            if str(exc).startswith(self.name):
                raise
            raise InputError(f"{self.name}: {exc}") from None
        self.reset()

    def reset(self) -> None:
        self._class_map: ClassMap | None = None
        self._real: list[tuple[np.ndarray, np.ndarray, str, str]] = []  # image, mask, source, split
        self._synthetic: list[tuple[np.ndarray, np.ndarray]] = []
        self._synthetic_sources: list[dict[str, Any]] = []  # layout + crop source ids
        self._sizes: dict[str, set[tuple[int, int]]] = {"real": set(), "synthetic": set()}

    def _check_classes(self, sample: TissueSample, what: str) -> None:
        if sample.image is None:
            raise InputError(f"{self.name}: a {what} sample has no image (a layout)")
        if self._class_map is None:
            self._class_map = sample.class_map
        elif sample.class_map.names != self._class_map.names:
            raise InputError(
                f"{self.name}: {what} sample classes {list(sample.class_map.names)} differ "
                f"from {list(self._class_map.names)}: real and synthetic sets must share one "
                "class list"
            )
        sample.class_map.check_mask(
            sample.mask, f"{what} mask ({sample.meta.get('slide_id', '?')})"
        )

    def no_masks(self) -> InputError:
        """The one-line refusal of a synthetic set without masks."""
        return InputError(_NO_MASKS.format(name=self.name, why=self.needs_masks))

    def update(self, *, real: Any = None, synthetic: Any = None) -> None:
        size = self.budget.input_size
        for s in real or ():
            self._check_classes(s, "real")
            self._sizes["real"].add(s.image.shape[:2])
            image, mask = resize_pair(s.image, s.mask, size)
            split = str(s.meta.get("split", "")).lower()
            self._real.append((image, mask, layout_source(s.meta) or f"#{len(self._real)}", split))
        for s in synthetic or ():
            if s.meta.get("mask") == "none":
                raise self.no_masks()
            self._check_classes(s, "synthetic")
            self._sizes["synthetic"].add(s.image.shape[:2])
            self._synthetic.append(resize_pair(s.image, s.mask, size))
            layout, crops = row_sources(s.meta)
            self._synthetic_sources.append({"layout_source_id": layout, "crop_source_ids": crops})

    def _split_real(self) -> tuple[list[int], list[int]]:
        if not self._real or self._class_map is None:
            raise InputError(f"{self.name}: no real samples were given; it tests on held-out "
                             "real data")  # fmt: skip
        splits = [r[3] for r in self._real]
        if any(splits):
            test = [i for i, s in enumerate(splits) if s == "test"]
            train = [i for i, s in enumerate(splits) if s != "test"]
        else:
            try:
                train, test = split_by_source(
                    [r[2] for r in self._real], self.options.test_fraction, self.options.seed
                )
            except InputError as exc:  # which evaluator, and the held-out set that avoids it
                raise InputError(
                    f"{self.name}: real set: {exc} (htd evaluate --real-test)"
                ) from None
        return train, test

    def _check_real(self, train: list[int], test: list[int], need_train: bool) -> None:
        if not test:
            raise InputError(f"{self.name}: no held-out real samples (every real sample has "
                             "split=train)")  # fmt: skip
        if need_train and not train:
            raise InputError(f"{self.name}: every real sample is held out; none left to train on")

    def _check_synthetic(self) -> None:
        if not self._synthetic:
            raise InputError(f"{self.name}: it needs synthetic samples but none were given (an "
                             "empty set?)")  # fmt: skip
        ignore = self._class_map.ignore_index
        if all((m == ignore).all() for _, m in self._synthetic):
            raise self.no_masks()

    def size_warnings(self) -> list[str]:
        """The note of :mod:`htd_plugins.evaluators.sizes` when the synthetic images are of
        another size than the real ones (warned once, and listed in the results)."""
        import warnings

        from htd_plugins.evaluators.sizes import ImageSizeWarning, size_note

        sizes, size = self._sizes, self.budget.input_size
        note = size_note(sizes["real"], sizes["synthetic"], size, self.name, "the IoU")
        if note:
            warnings.warn(note, ImageSizeWarning, stacklevel=3)
        return [note] if note else []

    def stack(self, indices: list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Images and masks of the real samples at ``indices`` (None: the synthetic ones)."""
        pairs = self._synthetic if indices is None else [self._real[i][:2] for i in indices]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])

    def real_network(self, train: tuple[np.ndarray, np.ndarray]) -> tuple[Any, dict[str, Any]]:
        """The network trained on the real training patches (cached: :mod:`.real_model`)."""
        from htd_plugins.evaluators.segmentation.real_model import real_network

        o = self.options
        return real_network(train, class_map=self._class_map, budget=self.budget, seed=o.seed,
                            device=o.device, augment=o.augment, cache_dir=o.cache_dir)  # fmt: skip

    def score(
        self, predictions: torch.Tensor, masks: np.ndarray, stream: int = 0
    ) -> dict[str, Any]:
        """IoU, Dice, accuracy and confusion of ``predictions`` against ``masks`` (one
        confusion matrix over all pixels), with the bootstrap samples of mean IoU over the
        images and their 95 % interval (:mod:`.bootstrap`: resamples depend on seed, the
        number of images and ``stream`` only: 0 held-out images, 1 synthetic ones)."""
        from htd_plugins.evaluators.segmentation.bootstrap import image_confusions, with_interval
        from htd_plugins.evaluators.segmentation.metrics import score_predictions, summarise

        cm = self._class_map
        labels = torch.from_numpy(masks.astype(np.int64))
        scores = score_predictions(predictions, labels, num_classes=len(cm),
                                   ignore_index=cm.ignore_index)  # fmt: skip
        confusions = image_confusions(predictions, labels, len(cm), cm.ignore_index)
        return with_interval(summarise(scores, cm.names), confusions, self.options.seed,
                             self.options.bootstrap, stream)  # fmt: skip

    def chance(self, masks: np.ndarray, train_masks: np.ndarray) -> float | None:
        """Mean IoU against ``masks`` of class maps drawn per pixel from the class frequencies
        of ``train_masks`` (the chance reference)."""
        from htd_plugins.evaluators.segmentation.metrics import score_predictions, summarise
        from htd_plugins.evaluators.segmentation.training import chance_predictions

        cm = self._class_map
        k, ignore = len(cm), cm.ignore_index
        v = train_masks[train_masks != ignore]
        counts = np.bincount(v.ravel(), minlength=k)[:k].astype(np.float64)
        freq = counts / counts.sum() if counts.sum() else np.full(k, 1.0 / k)
        labels = torch.from_numpy(masks.astype(np.int64))
        preds = chance_predictions(labels, freq, self.options.seed)
        scores = score_predictions(preds, labels, num_classes=k, ignore_index=ignore)
        return summarise(scores, cm.names)["mean_iou"]

    def budget_record(self) -> dict[str, Any]:
        """The budget as metrics record it."""
        return {"name": self.options.budget, **vars(self.budget)}
