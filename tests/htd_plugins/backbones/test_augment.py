"""Joint augmentation of image, mask (and so the condition built from them)."""

from __future__ import annotations

import numpy as np
import pytest

from htd_core.errors import InputError
from htd_core.types import ClassMap, TissueSample
from htd_plugins.backbones.ldm.augment import Augmentation, dihedral, hed_jitter, random_crop


def coloured_sample(size: int = 12) -> TissueSample:
    """Image whose red channel encodes the mask, so joint transforms can be checked."""
    rng = np.random.default_rng(0)
    mask = rng.integers(0, 3, (size, size)).astype(np.uint8)
    image = np.stack(
        [mask * 100, np.full_like(mask, 50), np.arange(size * size).reshape(size, size) % 256], -1
    )
    return TissueSample(image.astype(np.uint8), mask, ClassMap(("a", "b", "c")))


def test_dihedral_has_eight_distinct_variants():
    a = np.arange(9).reshape(3, 3)
    variants = {dihedral(a, v).tobytes() for v in range(8)}
    assert len(variants) == 8


def test_geometry_applies_to_image_and_mask_together():
    sample = coloured_sample()
    aug = Augmentation(dihedral=True, brightness=0.0, hed_sigma=0.0)
    seen = set()
    for seed in range(20):
        out, variant = aug(sample, np.random.default_rng(seed))
        seen.add(variant)
        assert np.array_equal(out.image[..., 0], out.mask * 100)
        assert np.array_equal(out.mask, dihedral(sample.mask, variant))
    assert len(seen) > 4


def he_like_sample(size: int = 16) -> TissueSample:
    """Pink/purple pixels around H&E colours (colour deconvolution is exact only there)."""
    rng = np.random.default_rng(0)
    base = np.where(rng.random((size, size, 1)) < 0.5, [[[215, 130, 185]]], [[[120, 60, 150]]])
    image = np.clip(base + rng.normal(0, 10, (size, size, 3)), 0, 255).astype(np.uint8)
    return TissueSample(image, np.zeros((size, size), np.uint8), ClassMap(("a",)))


def test_stain_jitter_changes_colour_not_geometry():
    sample = he_like_sample()
    identity = hed_jitter(sample.image, np.random.default_rng(1), 0.0)
    assert identity.dtype == np.uint8
    assert np.abs(identity.astype(int) - sample.image).mean() < 1
    aug = Augmentation(dihedral=False, brightness=0.0, hed_sigma=0.1)
    out, _ = aug(sample, np.random.default_rng(0))
    again, _ = aug(sample, np.random.default_rng(0))
    assert np.array_equal(out.image, again.image)  # seeded
    assert np.array_equal(out.mask, sample.mask)
    diff = np.abs(out.image.astype(int) - sample.image.astype(int)).mean()
    assert 1 < diff < 30


def test_options_are_validated_and_crop_checks_size():
    with pytest.raises(InputError, match="brightness"):
        Augmentation(brightness=1.5)
    assert Augmentation(brightness=0, hed_sigma=0).colour is False
    with pytest.raises(InputError, match="smaller than the model's 16 px"):
        random_crop(coloured_sample(12), 16, np.random.default_rng(0))
    crop = random_crop(coloured_sample(12), 8, np.random.default_rng(0))
    assert crop.size == (8, 8) and np.array_equal(crop.image[..., 0], crop.mask * 100)
