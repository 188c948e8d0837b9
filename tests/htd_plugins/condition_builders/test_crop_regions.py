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
