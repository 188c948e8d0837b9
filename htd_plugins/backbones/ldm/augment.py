"""Tissue-aware augmentation, applied to a sample before its condition is built.

Augmenting the *sample* (image and mask together) and then building the condition from it
keeps image, mask and condition consistent by construction: the crops of the dual condition
are cut from the rotated, stain-jittered image, so the model still learns to copy crop
appearance. Tissue has no canonical orientation, so all eight 90-degree rotations and flips
are valid; H&E stain jitter perturbs the haematoxylin, eosin and DAB concentrations in HED
space (Tellez et al. 2018) with scikit-image's colour deconvolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from htd_core.errors import InputError
from htd_core.types import TissueSample


@dataclass(frozen=True)
class Augmentation:
    """Augmentation options (all off gives the identity).

    Attributes:
        dihedral: random 90-degree rotations and flips (8 variants).
        brightness: maximum relative brightness change (0.1: factor in [0.9, 1.1]).
        hed_sigma: HED jitter strength: each stain channel becomes ``c * a + b`` with
            ``a ~ U(1 - s, 1 + s)`` and ``b ~ U(-s, s) * 0.05``; 0 turns it off.
    """

    dihedral: bool = True
    brightness: float = 0.05
    hed_sigma: float = 0.03

    def __post_init__(self) -> None:
        if not 0 <= self.brightness < 1:
            raise InputError(f"augment brightness={self.brightness} must be in [0, 1)")
        if not 0 <= self.hed_sigma < 1:
            raise InputError(f"augment hed_sigma={self.hed_sigma} must be in [0, 1)")

    @property
    def colour(self) -> bool:
        """True when the image's colours change (latents cannot then be cached)."""
        return self.brightness > 0 or self.hed_sigma > 0

    @property
    def num_variants(self) -> int:
        """Geometric variants a latent cache must hold."""
        return 8 if self.dihedral else 1

    def __call__(self, sample: TissueSample, rng: np.random.Generator) -> tuple[TissueSample, int]:
        """The augmented sample and the index of its dihedral variant (0..7)."""
        variant = int(rng.integers(8)) if self.dihedral else 0
        image = sample.image
        if image is not None:
            image = dihedral(image, variant)
            if self.hed_sigma > 0:
                image = hed_jitter(image, rng, self.hed_sigma)
            if self.brightness > 0:
                factor = rng.uniform(1 - self.brightness, 1 + self.brightness)
                image = np.clip(image.astype(np.float32) * factor, 0, 255).round().astype(np.uint8)
        mask = dihedral(sample.mask, variant)
        return TissueSample(image, mask, sample.class_map, sample.meta), variant


def dihedral(array: np.ndarray, variant: int) -> np.ndarray:
    """Variant ``0..7`` of the dihedral group on the first two axes (k rotations, then flip)."""
    out = np.rot90(array, k=variant % 4, axes=(0, 1))
    if variant >= 4:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def hed_jitter(image: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Perturb stain concentrations in HED space; uint8 in, uint8 out.

    Colour deconvolution with scikit-image's Ruifrok-Johnston stain matrices, written out
    (optical density, one matrix product each way) since it runs for every training sample.
    """
    from skimage.color import hed_from_rgb, rgb_from_hed

    scale = np.float32(-np.log(1e-6))  # scikit-image's stain units: OD / -log(1e-6)
    od = -np.log(np.maximum(image.reshape(-1, 3).astype(np.float32) / 255.0, 1e-6))
    hed = np.maximum(od @ hed_from_rgb.astype(np.float32) / scale, 0)
    alpha = rng.uniform(1 - sigma, 1 + sigma, size=3).astype(np.float32)
    beta = (rng.uniform(-sigma, sigma, size=3) * 0.05).astype(np.float32)
    rgb = np.exp(-((hed * alpha + beta) * scale) @ rgb_from_hed.astype(np.float32))
    return np.clip(rgb * 255, 0, 255).round().astype(np.uint8).reshape(image.shape)


def random_crop(sample: TissueSample, size: int, rng: np.random.Generator) -> TissueSample:
    """A ``size`` x ``size`` window of ``sample`` (the sample itself when it already fits)."""
    h, w = sample.size
    if h < size or w < size:
        raise InputError(
            f"sample {sample.meta.get('slide_id', '')!s} is {h}x{w} px, smaller than the model's "
            f"{size} px patches: sample larger patches or choose a smaller image_size"
        )
    if (h, w) == (size, size):
        return sample
    y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    image = None if sample.image is None else sample.image[y : y + size, x : x + size]
    meta = {**sample.meta, "crop_y": y, "crop_x": x}
    return TissueSample(image, sample.mask[y : y + size, x : x + size], sample.class_map, meta)
