"""``privacy``: does synthetic tissue copy real training tissue beyond the crops it was given?

For every synthetic image: its nearest real training image, and its nearest real training
*crop* (each image cut into ``crop_grid`` x ``crop_grid`` windows, windows compared with all
real windows), in an encoder's feature space (cosine distance) and in pixel space (RMS on a
``pixel_size`` grid); each with the conditioning-crop region left out ("masked", from
``meta["crop_provenance"]`` or ``meta["crop_boxes"]``, see :func:`.privacy_math.crop_boxes`)
and not.

A distance means little alone, so a threshold is calibrated on real-vs-real distances: held-out
real images (``meta["split"] == "test"``) to the training images when given, otherwise each
training image to the training images of *other* source images. The report gives the
``quantile`` of those distances as the threshold and the fraction of synthetic images closer
than it: about ``quantile`` when synthetic images are as novel as new real ones; much more
means near-copies. The ``top_k`` closest pairs are drawn as a figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from htd_core import Evaluator, TissueSample, hookimpl
from htd_core.errors import InputError
from htd_core.splits import sample_source
from htd_plugins.evaluators import privacy_math as pm
from htd_plugins.evaluators.encoding import EncoderSpec, build_encoder, embed_images

THUMB = 128


class PrivacyEvaluator(Evaluator):
    """Nearest-real-neighbour audit of synthetic images, with crop regions masked and not.

    Args:
        encoder: registered encoder name, ``{"name": ..., **options}`` or an Encoder instance.
        weights: the encoder's local weights file, when it needs one.
        device: where the encoder runs.
        batch_size: images per encoder forward pass.
        pixel_size: side of the grid on which pixel distances are computed.
        crop_grid: windows per side for the crop-level search (0: image level only).
        quantile: real-vs-real quantile used as the "too close" threshold.
        top_k: closest pairs listed and drawn.
        output_dir: folder for figures and per-sample CSV (None: none written).
    """

    name = "privacy"

    def __init__(
        self,
        encoder: EncoderSpec = "inception_fid",
        weights: str | None = None,
        device: str = "cpu",
        batch_size: int = 32,
        pixel_size: int = 64,
        crop_grid: int = 2,
        quantile: float = 0.05,
        top_k: int = 8,
        output_dir: str | Path | None = None,
    ) -> None:
        if pixel_size < 8 or crop_grid < 0 or (crop_grid and pixel_size % crop_grid):
            raise InputError(
                f"privacy: pixel_size={pixel_size}, crop_grid={crop_grid}; use pixel_size >= 8 "
                "divisible by crop_grid (crop_grid 0 disables the crop-level search)"
            )
        if not 0.0 < quantile < 1.0 or top_k < 0 or batch_size < 1:
            raise InputError(
                f"privacy: quantile={quantile} must be in (0, 1), top_k={top_k} >= 0, batch_size={batch_size} >= 1"
            )
        self.encoder_spec, self.weights, self.device = encoder, weights, device
        self.batch_size, self.pixel_size, self.crop_grid = (
            int(batch_size),
            int(pixel_size),
            int(crop_grid),
        )
        self.quantile, self.top_k = float(quantile), int(top_k)
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self._encoder = None
        self.reset()

    @property
    def encoder(self):
        if self._encoder is None:
            self._encoder = build_encoder(
                self.encoder_spec, weights=self.weights, device=self.device
            )
        return self._encoder

    def reset(self) -> None:
        self._real: list[dict[str, Any]] = []
        self._synthetic: list[dict[str, Any]] = []

    # -- accumulation -------------------------------------------------------------------
    def _embed_windows(
        self, images: list[np.ndarray], regions: list[np.ndarray | None]
    ) -> np.ndarray:
        """Features (N * grid^2) x D of every window; windows wholly inside a region are NaN."""
        wins, drop = [], []
        for img, reg in zip(images, regions, strict=True):
            filled = pm.fill_region(img, reg)
            wins += pm.windows(filled, self.crop_grid)
            drop += (
                [False] * self.crop_grid**2
                if reg is None
                else [bool(w.all()) for w in pm.windows(reg, self.crop_grid)]
            )
        feats = embed_images(self.encoder, wins, self.batch_size).astype(np.float64)
        feats[np.asarray(drop, bool)] = np.nan
        return feats

    def _entries(
        self, samples: Sequence[TissueSample], what: str, masked: bool, offset: int
    ) -> list[dict[str, Any]]:
        if not samples:
            return []
        for i, s in enumerate(samples):
            if s.image is None:
                raise InputError(f"privacy: {what} sample {i} has no image (a layout)")
        images = [s.image for s in samples]
        regions = [pm.crop_region(s.meta, s.image.shape[:2]) if masked else None for s in samples]
        feats = embed_images(self.encoder, images, self.batch_size)
        has_regions = any(r is not None for r in regions)
        filled = [pm.fill_region(im, r) for im, r in zip(images, regions, strict=True)]
        masked_feats = embed_images(self.encoder, filled, self.batch_size) if has_regions else feats
        grid = self.crop_grid
        win_feats = self._embed_windows(images, [None] * len(images)) if grid else None
        win_masked = self._embed_windows(images, regions) if grid and has_regions else win_feats
        out = []
        for i, (s, reg) in enumerate(zip(samples, regions, strict=True)):
            small_reg = pm.region_on_grid(reg, self.pixel_size) if reg is not None else None
            out.append({
                "index": offset + i,
                "id": str(s.meta.get("slide_id", s.meta.get("image", ""))),
                "source": sample_source(s.meta),
                "split": str(s.meta.get("split", "")).lower(),
                "pixels": pm.resize_uint8(s.image, self.pixel_size),
                "keep": None if small_reg is None else ~small_reg,
                "thumb": pm.resize_uint8(s.image, THUMB),
                "region": None if reg is None else pm.resize_uint8(reg, THUMB),
                "feat": feats[i], "feat_masked": masked_feats[i],
                "win": None if win_feats is None else win_feats[i * grid**2 : (i + 1) * grid**2],
                "win_masked": None if win_masked is None else win_masked[i * grid**2 : (i + 1) * grid**2],
            })  # fmt: skip
        return out

    def update(
        self,
        *,
        real: Sequence[TissueSample] | None = None,
        synthetic: Sequence[TissueSample] | None = None,
    ) -> None:
        self._real += self._entries(list(real or ()), "real", False, len(self._real))
        self._synthetic += self._entries(
            list(synthetic or ()), "synthetic", True, len(self._synthetic)
        )

    # -- answers ------------------------------------------------------------------------
    def aggregate(self) -> dict[str, Any]:
        from htd_plugins.evaluators.privacy_report import audit

        ref = [r for r in self._real if r["split"] != "test"]
        if not ref or not self._synthetic:
            raise InputError(
                f"privacy: got {len(ref)} real training and {len(self._synthetic)} synthetic "
                "images; the audit needs both (an empty set?)"
            )
        return audit(self, ref, [r for r in self._real if r["split"] == "test"])


@hookimpl
def htd_register_evaluators(registry) -> None:
    registry.register("privacy", PrivacyEvaluator)
