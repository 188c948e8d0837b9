"""Window planning and blending weights; seam metrics on images with and without seams."""

from __future__ import annotations

import numpy as np
import pytest

from htd_core.errors import InputError
from htd_plugins.slide_synthesis.seams import gradient_ratio, interior_lines, seam_patches
from htd_plugins.slide_synthesis.windows import WindowPlan, axis_starts, axis_weights


def test_windows_cover_the_canvas_and_end_at_its_border():
    starts = axis_starts(100, 16, 0.5)
    assert starts[0] == 0 and starts[-1] == 100 - 16
    assert np.diff(starts).max() <= 8  # at least half a window shared
    assert list(axis_starts(64, 16, 0.0)) == [0, 16, 32, 48]  # plain tiling
    assert list(axis_starts(16, 16, 0.5)) == [0]


def test_neighbouring_weights_sum_to_one_and_are_never_zero():
    starts = axis_starts(64, 16, 0.5)
    weights = axis_weights(starts, 16)
    total = np.zeros(64)
    for s, w in zip(starts, weights, strict=True):
        total[s : s + 16] += w
    assert np.allclose(total, 1.0)  # sin^2 + cos^2: a partition of unity
    assert weights.min() > 0
    assert weights[0, 0] == 1.0 and weights[-1, -1] == 1.0  # canvas borders not ramped
    plan = WindowPlan.create(40, 72, 16, 0.5)
    acc = np.zeros((40, 72), np.float32)
    for i in range(len(plan)):
        y, x = plan.position(i)
        acc[y : y + 16, x : x + 16] += plan.weight(i)
    assert np.allclose(acc, plan.weight_sum(), atol=1e-5)
    assert plan.weight_sum().min() > 0.5


def test_bad_window_plans_are_refused():
    with pytest.raises(InputError, match="larger than the canvas"):
        axis_starts(10, 16, 0.5)
    with pytest.raises(InputError, match="overlap"):
        axis_starts(64, 16, 1.0)


def test_gradient_ratio_sees_a_seam_and_not_an_interior():
    rng = np.random.default_rng(0)
    image = rng.integers(100, 140, size=(128, 128, 3)).astype(np.uint8)
    edges = np.array([32, 64, 96])
    clean = gradient_ratio(image, edges, edges)
    assert 0.9 < clean["ratio"] < 1.1
    seamed = image.astype(int)
    seamed[:, 32:64] += 40  # tiles of another brightness: steps at columns 32, 64 and 96
    seamed[:, 96:] += 40
    seamed = seamed.astype(np.uint8)
    assert gradient_ratio(seamed, edges, edges)["ratio"] > 1.5
    assert list(interior_lines(edges, 128)) == [16, 48, 80, 112]
    straddling, centred = seam_patches(image, edges, edges, 32)
    assert len(straddling) == 9 and len(centred) == 16
    with pytest.raises(InputError, match="no window edge"):
        gradient_ratio(image, np.array([], int), np.array([], int))


def test_real_vs_real_halves_never_share_a_source():
    from htd_plugins.slide_synthesis.seams import _halves

    groups = [f"s{i // 4}" for i in range(40)]  # 10 sources of 4 patches
    for seed in range(5):
        a, b = _halves(40, groups, 12, seed)
        assert len(a) == len(b) == 12
        assert not {groups[i] for i in a} & {groups[i] for i in b}
    with pytest.raises(InputError, match="more reference patches"):
        _halves(40, groups, 30, 0)


@pytest.mark.parametrize(
    ("options", "message"),
    [({"patch_size": 0}, "patch_size=0 must be an integer >= 1"),
     ({"max_patches": 0}, "max_patches=0"), ({"repeats": -1}, "repeats=-1")],
)  # fmt: skip
def test_seam_report_numbers_are_checked_before_any_file_is_read(tmp_path, options, message):
    """0 never silently means "the default" (issue 27)."""
    from htd_plugins.slide_synthesis import seam_report

    with pytest.raises(InputError, match=message):
        seam_report(tmp_path / "absent.tif", **options)
