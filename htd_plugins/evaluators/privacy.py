"""``privacy``: does synthetic tissue copy real training tissue beyond the crops it was given?

For every synthetic image: its nearest real training image, and its nearest real training
*crop* (each image cut into ``crop_grid`` x ``crop_grid`` windows, windows compared with all
real windows), in an encoder's feature space (cosine distance) and in pixel space (RMS on a
``pixel_size`` grid); each with the conditioning-crop region left out ("masked", from
``meta["crop_provenance"]`` or ``meta["crop_boxes"]``, see :func:`.privacy_audit.distances.crop_boxes`)
and not.

A distance means little alone, so a threshold is calibrated on real-vs-real distances: held-out
real images (``meta["split"] == "test"``) to the training images when given, otherwise each
training image to the training images of *other* source images. The report gives the
``quantile`` of those distances as the threshold and the fraction of synthetic images closer
than it: about ``quantile`` when synthetic images are as novel as new real ones; much more
means near-copies. The ``top_k`` closest pairs are drawn as a figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from htd_core import Evaluator, TissueSample, hookimpl
from htd_core.errors import InputError
from htd_core.images import opaque_id
from htd_core.interfaces.evaluator import ReportContext, RunSettings
from htd_core.splits import sample_source
from htd_plugins.evaluators.distance.encoding import (
    EncoderSpec,
    build_encoder,
    embed_images,
    encoder_spec_name,
)
from htd_plugins.evaluators.distance.feature_cache import FeatureCache, embed_cached, image_key
from htd_plugins.evaluators.privacy_audit import distances as pm
from htd_plugins.evaluators.privacy_audit.entries import AuditOptions, Entry, require_entries

THUMB = 128
#: The encoder used when neither ``encoder`` nor ``htd evaluate --encoders`` names one.
DEFAULT_ENCODER = "inception_fid"


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
        cache_dir: folder of the real-set feature cache shared with ``frechet`` (one file per
            encoder, rows keyed by image content): the real images and their windows are
            embedded once for every synthetic set and rerun (None: no cache).
    """

    name = "privacy"

    def __init__(
        self,
        encoder: EncoderSpec = DEFAULT_ENCODER,
        weights: str | None = None,
        device: str = "cpu",
        batch_size: int = 32,
        pixel_size: int = 64,
        crop_grid: int = 2,
        quantile: float = 0.05,
        top_k: int = 8,
        output_dir: str | Path | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        if batch_size < 1:
            raise InputError(f"privacy: batch_size={batch_size}; use an integer >= 1")
        self.options = AuditOptions(
            pixel_size=int(pixel_size),
            crop_grid=int(crop_grid),
            quantile=float(quantile),
            top_k=int(top_k),
            output_dir=Path(output_dir) if output_dir is not None else None,
        )
        self.encoder_spec, self.weights, self.device = encoder, weights, device
        self.batch_size = int(batch_size)
        self.pixel_size, self.crop_grid = self.options.pixel_size, self.options.crop_grid
        self._encoder = None
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._cache: FeatureCache | None = None
        self.reset()

    @property
    def encoder(self):
        if self._encoder is None:
            self._encoder = build_encoder(
                self.encoder_spec, weights=self.weights, device=self.device
            )
        return self._encoder

    def reset(self) -> None:
        self._real: list[Entry] = []
        self._synthetic: list[Entry] = []

    def _embed(self, images: list[np.ndarray], real: bool) -> np.ndarray:
        """Features of ``images``; real ones through the feature cache when there is one."""
        if not real or self.cache_dir is None:
            return embed_images(self.encoder, images, self.batch_size)
        if self._cache is None:
            self._cache = FeatureCache(self.cache_dir, self.encoder)
        keys = [image_key(im) for im in images]
        return embed_cached(self.encoder, self._cache, images, keys, self.batch_size)

    # -- accumulation -------------------------------------------------------------------
    def _embed_windows(
        self, images: list[np.ndarray], regions: list[np.ndarray | None], real: bool = False
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
        feats = self._embed(wins, real).astype(np.float64)
        feats[np.asarray(drop, bool)] = np.nan
        return feats

    def _entries(
        self, samples: Sequence[TissueSample], what: str, masked: bool, offset: int
    ) -> list[Entry]:
        if not samples:
            return []
        for i, s in enumerate(samples):
            if s.image is None:
                raise InputError(f"privacy: {what} sample {i} has no image (a layout)")
        images = [s.image for s in samples]
        regions = [pm.crop_region(s.meta, s.image.shape[:2]) if masked else None for s in samples]
        feats = self._embed(images, what == "real")
        has_regions = any(r is not None for r in regions)
        filled = [pm.fill_region(im, r) for im, r in zip(images, regions, strict=True)]
        masked_feats = embed_images(self.encoder, filled, self.batch_size) if has_regions else feats
        grid = self.crop_grid
        win_feats = (
            self._embed_windows(images, [None] * len(images), what == "real") if grid else None
        )
        win_masked = self._embed_windows(images, regions) if grid and has_regions else win_feats
        out = []
        for i, (s, reg) in enumerate(zip(samples, regions, strict=True)):
            small_reg = pm.region_on_grid(reg, self.pixel_size) if reg is not None else None
            window = slice(i * grid**2, (i + 1) * grid**2)
            out.append(
                Entry(
                    index=offset + i,
                    id=_opaque(s.meta),
                    source=sample_source(s.meta),
                    split=str(s.meta.get("split", "")).lower(),
                    pixels=pm.resize_uint8(s.image, self.pixel_size),
                    keep=None if small_reg is None else ~small_reg,
                    thumb=pm.resize_uint8(s.image, THUMB),
                    region=None if reg is None else pm.resize_uint8(reg, THUMB),
                    feat=feats[i],
                    feat_masked=masked_feats[i],
                    win=None if win_feats is None else win_feats[window],
                    win_masked=None if win_masked is None else win_masked[window],
                )
            )
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
        from htd_plugins.evaluators.privacy_audit.audit import audit

        ref = [r for r in self._real if r.split != "test"]
        held_out = [r for r in self._real if r.split == "test"]
        require_entries(ref, self._synthetic)  # before building an encoder for its label
        if self._cache is not None:
            self._cache.save()
        return audit(self.options, ref, held_out, self._synthetic, encoder=self.encoder)

    # -- declared to htd evaluate and its report ------------------------------------------
    @classmethod
    def run_options(cls, run: RunSettings, options: Mapping[str, Any]) -> dict[str, Any]:
        """``device`` and ``output_dir``; the first of ``--encoders`` as ``encoder``, and the
        ``--weights`` of the encoder used (the user's own, else that one, else the default)."""
        offered = super().run_options(run, options)
        if run.encoders:
            offered["encoder"] = run.encoders[0]
        name = encoder_spec_name(options.get("encoder", offered.get("encoder", DEFAULT_ENCODER)))
        if name in run.weights:
            offered["weights"] = run.weights[name]
        return offered

    @classmethod
    def report_section(
        cls, results: Mapping[str, Mapping[str, Any]], context: ReportContext
    ) -> str:
        from htd_plugins.evaluators.privacy_audit.section import privacy_section

        return privacy_section(results, context)

    @classmethod
    def nearest_real(cls, metrics: Mapping[str, Any]) -> Sequence[int] | None:
        return metrics.get("nearest_real")


def _opaque(meta: Mapping[str, Any]) -> str:
    """The sample's opaque slide id; a bare image name is hashed (never reported as is)."""
    if meta.get("slide_id") not in (None, ""):
        return str(meta["slide_id"])
    return opaque_id(str(meta["image"])) if meta.get("image") not in (None, "") else ""


@hookimpl
def htd_register_evaluators(registry) -> None:
    registry.register("privacy", PrivacyEvaluator)
