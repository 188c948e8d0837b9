"""The privacy audit's inputs: its options and one entry per image (no evaluator state)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from htd_core.errors import InputError


@dataclass(frozen=True)
class AuditOptions:
    """Options of the audit (see :class:`htd_plugins.evaluators.privacy.PrivacyEvaluator`).

    Raises:
        InputError: ``pixel_size`` < 8 or not divisible by ``crop_grid``, ``crop_grid`` < 0,
            ``quantile`` outside (0, 1) or ``top_k`` < 0.
    """

    pixel_size: int = 64
    crop_grid: int = 2
    quantile: float = 0.05
    top_k: int = 8
    output_dir: Path | None = None

    def __post_init__(self) -> None:
        size, grid = self.pixel_size, self.crop_grid
        if size < 8 or grid < 0 or (grid and size % grid):
            raise InputError(
                f"privacy: pixel_size={size}, crop_grid={grid}; use pixel_size >= 8 "
                "divisible by crop_grid (crop_grid 0 disables the crop-level search)"
            )
        if not 0.0 < self.quantile < 1.0 or self.top_k < 0:
            raise InputError(
                f"privacy: quantile={self.quantile} must be in (0, 1) and top_k={self.top_k} >= 0"
            )


@dataclass
class Entry:
    """One image as the audit sees it.

    Attributes:
        index: position in its set (real or synthetic), as given to the evaluator.
        id: opaque slide id from the sample's meta (for the report; never a file name).
        source: source image (leave-source-out calibration), empty when unknown.
        split: ``"test"`` for held-out real images, else anything.
        pixels: uint8 ``pixel_size`` x ``pixel_size`` x 3 image.
        keep: bool ``pixel_size`` x ``pixel_size``, False inside the crop region; None: no crops.
        thumb: uint8 128 x 128 x 3 image (figures).
        region: bool 128 x 128 crop region (figures); None without crops.
        feat, feat_masked: float D features of the image, and with the crop region filled.
        win, win_masked: float (grid^2) x D window features (NaN for windows inside the
            region), None when ``crop_grid`` is 0.
    """

    index: int
    id: str
    source: str
    split: str
    pixels: np.ndarray
    keep: np.ndarray | None
    thumb: np.ndarray
    region: np.ndarray | None
    feat: np.ndarray
    feat_masked: np.ndarray
    win: np.ndarray | None
    win_masked: np.ndarray | None


def require_entries(ref: list[Entry], synthetic: list[Entry]) -> None:
    """Raise :class:`InputError` unless there are real training and synthetic entries."""
    if not ref or not synthetic:
        raise InputError(
            f"privacy: got {len(ref)} real training and {len(synthetic)} synthetic images; "
            "the audit needs both (an empty set?)"
        )
