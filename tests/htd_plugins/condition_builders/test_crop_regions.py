from __future__ import annotations

import numpy as np

from htd_plugins.condition_builders.crops.regions import (
    choose_elsewhere,
    choose_square,
    class_integrals,
    fits,
    largest_fitting_side,
    region_complexity,
    window_counts,
)


def test_integrals_count_every_window():
    rng = np.random.default_rng(0)
    mask = rng.integers(0, 3, (17, 23)).astype(np.uint8)
    mask[0, :5] = 255
    integ = class_integrals(mask, 3)
    for k in range(3):
        for y, x, d in [(0, 0, 5), (3, 7, 9), (8, 14, 9), (0, 0, 17)]:
            expected = int((mask[y : y + d, x : x + d] == k).sum())
            assert window_counts(integ[k], d)[y, x] == expected
    assert integ[:, -1, -1].sum() == (mask != 255).sum()


def test_complexity_square_is_simple_and_fragments_are_complex():
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 1
    checker = (np.indices((64, 64)).sum(0) // 4 % 2).astype(np.uint8)
    square, fragmented = region_complexity(mask, 2)[1], region_complexity(checker, 2)[1]
    assert square == 0.0
    assert fragmented > 0.7
    assert region_complexity(mask, 3)[2] == 0.0  # absent class


def test_choose_square_respects_min_inside_and_shrinks():
    mask = np.zeros((60, 60), np.uint8)
    mask[10:30, 5:55] = 1  # 20 px tall band
    integ = class_integrals(mask, 2)
    rng = np.random.default_rng(0)
    assert choose_square(integ[1], 40, 8, 0.9, shrink=False, rng=rng) is None
    y, x, d = choose_square(integ[1], 40, 8, 0.9, shrink=True, rng=rng)
    assert 20 <= d < 40 and (mask[y : y + d, x : x + d] == 1).mean() >= 0.9
    assert largest_fitting_side(integ[1], 40, 8, 1.0) == 20
    assert choose_square(integ[1], 40, 30, 1.0, shrink=True, rng=rng) is None  # floor above fit
    assert not fits(integ[1], 61, 0.9).any()


def test_choose_elsewhere_avoids_the_source():
    mask = np.ones((50, 50), np.uint8)
    integ = class_integrals(mask, 2)
    for seed in range(5):
        y, x = choose_elsewhere(integ[1], 10, 0.9, (20, 20), np.random.default_rng(seed))
        assert max(abs(y - 20), abs(x - 20)) >= 10
    tight = np.zeros((20, 20), np.uint8)
    tight[5:15, 5:15] = 1  # only one valid 10 px position: stays
    integ = class_integrals(tight, 2)
    assert choose_elsewhere(integ[1], 10, 1.0, (5, 5), np.random.default_rng(0)) == (5, 5)


#: A 10 x 10 class region with 10 scattered holes: the whole 10 px square is exactly 90% class,
#: but no 6, 7, 8 or 9 px square reaches 90% (fitting is not monotone in the side).
HOLES = [31, 34, 37, 41, 46, 54, 57, 72, 74, 83]


def _holed_region(size: int = 10) -> np.ndarray:
    mask = np.ones((size, size), np.uint8)  # class 1 outside the region (when size > 10)
    region = np.zeros(100, np.uint8)
    region[HOLES] = 1
    mask[:10, :10] = region.reshape(10, 10)
    return mask


def test_largest_side_is_found_when_fitting_is_not_monotone():
    integ = class_integrals(_holed_region(), 2)[0]
    assert fits(integ, 10, 0.9).any() and not any(fits(integ, s, 0.9).any() for s in (7, 8, 9))
    assert largest_fitting_side(integ, 10, 7, 0.9) == 10  # a binary search returns 0
    assert largest_fitting_side(integ, 9, 7, 0.9) == 0  # nothing of 7..9 px
    assert largest_fitting_side(integ, 9, 5, 0.9) == 5


def test_crop_builder_shrinks_to_the_true_largest_square():
    from htd_core.types import ClassMap, TissueSample
    from htd_plugins.condition_builders.crop import CropBuilder

    mask = _holed_region(14)  # the holed region in a corner of a 14 px patch of class 1
    image = np.zeros((14, 14, 3), np.uint8)
    sample = TissueSample(image, mask, ClassMap(("a", "b")), {"slide_id": "s"})
    builder = CropBuilder(fixed_size=12, min_size=7, min_inside=0.9)
    prov = builder.build(sample, seed=0).meta["crop_provenance"]["a"]
    assert (prov["x"], prov["y"], prov["size"]) == (0, 0, 10)
