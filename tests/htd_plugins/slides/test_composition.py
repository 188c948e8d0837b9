from __future__ import annotations

import numpy as np
import pytest

from htd_core.dataset import composition_entropy
from htd_core.errors import InputError
from htd_plugins.slides.composition import (
    CompositionRule,
    entropy,
    fractions,
    interleave_groups,
    limit_overlap,
    window_counts,
)


def brute_counts(cells, k, positions, window):
    return np.array(
        [
            [np.sum(cells[r : r + window, c : c + window] == i) for i in range(k)]
            for r, c in positions
        ]
    )


@pytest.mark.parametrize(("block", "window"), [(1, 7), (2, 8), (4, 8), (3, 9)])
def test_window_counts_match_brute_force(block, window):
    rng = np.random.default_rng(block)
    cells = rng.integers(0, 5, (41, 57)).astype(np.uint8)
    cells[rng.random(cells.shape) < 0.2] = 255
    pos = np.array(
        [(r, c) for r in range(0, 41 - window + 1, block) for c in range(0, 57 - window + 1, block)]
    )
    assert np.array_equal(
        window_counts(cells, 4, pos, window, block), brute_counts(cells, 4, pos, window)
    )


def test_window_counts_in_class_chunks(monkeypatch):
    import htd_plugins.slides.composition as comp

    monkeypatch.setattr(comp, "_MAX_BYTES", 1)  # one class per pass
    cells = np.random.default_rng(0).integers(0, 6, (20, 30)).astype(np.uint8)
    pos = np.array([[0, 0], [5, 10], [12, 22]])
    assert np.array_equal(comp.window_counts(cells, 6, pos, 8), brute_counts(cells, 6, pos, 8))


def test_window_counts_rejects_misaligned_positions():
    with pytest.raises(ValueError, match="multiples of block"):
        window_counts(np.zeros((8, 8), np.uint8), 2, np.array([[1, 0]]), 4, block=2)


def test_fractions_and_entropy_match_dataset_definition():
    counts = np.array([[30, 10, 0], [0, 0, 0], [5, 5, 5]])
    frac, labelled = fractions(counts, 64)
    assert np.allclose(frac[0], [0.75, 0.25, 0]) and labelled[0] == 40 / 64
    assert np.all(frac[1] == 0) and labelled[1] == 0
    for row in frac:
        assert entropy(row[None])[0] == pytest.approx(composition_entropy(row))


def test_heterogeneous_rule():
    rule = CompositionRule(min_frac=0.2, max_frac=0.8, min_labeled=0.5)
    frac = np.array(
        [[0.5, 0.5, 0.0], [0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.5, 0.3, 0.2], [0.5, 0.5, 0]]
    )
    labelled = np.array([1.0, 1.0, 1.0, 1.0, 0.4])
    assert rule.accept(frac, labelled).tolist() == [True, False, True, True, False]
    excluded = CompositionRule(exclude=(1,))
    assert excluded.accept(frac[:1], labelled[:1]).tolist() == [False]  # background never qualifies
    three = CompositionRule(min_classes=3)
    assert three.accept(frac, labelled).tolist() == [False, False, False, True, False]


def test_homogeneous_rule():
    rule = CompositionRule(mode="homogeneous", homogeneous_frac=0.9)
    frac = np.array([[0.95, 0.05], [0.85, 0.15]])
    assert rule.accept(frac, np.ones(2)).tolist() == [True, False]
    assert rule.group(frac).tolist() == [0, 0]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"min_frac": 0.9, "max_frac": 0.5}, "min_frac"),
        ({"min_frac": 1.5}, "min_frac"),
        ({"mode": "mixed"}, "mode"),
        ({"min_classes": 3, "min_frac": 0.4}, "no patch can satisfy"),
        ({"min_classes": 0}, "min_classes"),
    ],
)
def test_rule_options_are_validated(options, message):
    with pytest.raises(InputError, match=message):
        CompositionRule(**options)


def test_group_is_the_class_pair():
    rule = CompositionRule()
    frac = np.array([[0.5, 0.0, 0.5], [0.0, 0.4, 0.6], [0.3, 0.3, 0.4]])
    k = 3
    assert rule.group(frac).tolist() == [0 * k + 2, 1 * k + 2, 0 * k + 2]


def test_interleave_balances_every_prefix():
    groups = np.array([0] * 10 + [1] * 3 + [2] * 5)
    order = np.arange(18)
    out = interleave_groups(order, groups)
    assert sorted(out.tolist()) == list(range(18))
    first9 = groups[out[:9]]
    assert np.bincount(first9).tolist() == [3, 3, 3]
    assert out[:3].tolist() == [0, 10, 13]  # each group keeps its own order


def test_limit_overlap_keeps_pairwise_overlap_low():
    rng = np.random.default_rng(0)
    xy = rng.integers(0, 400, (300, 2))
    kept = limit_overlap(xy, np.arange(300), 64, 0.25)
    assert len(kept) > 10
    for i in kept:
        for j in kept:
            if i < j:
                ix = max(0, 64 - abs(xy[i, 0] - xy[j, 0]))
                iy = max(0, 64 - abs(xy[i, 1] - xy[j, 1]))
                assert ix * iy / 64**2 <= 0.25
    assert len(limit_overlap(xy, np.arange(300), 64, 0.25, limit=5)) == 5
    assert len(limit_overlap(xy, np.arange(300), 64, 1.0)) == 300
