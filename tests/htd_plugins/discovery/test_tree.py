"""The merge tree: exact nesting of granularities, weighted Ward, serialisation."""

from __future__ import annotations

import numpy as np
import pytest

from htd_core.errors import InputError
from htd_plugins.slides.phenotypes import PhenotypeTree, ward_linkage


def test_unweighted_ward_matches_scipy(make_blobs):
    from scipy.cluster.hierarchy import linkage

    x = make_blobs([1] * 30, dim=6, seed=7, spread=0.0).astype(np.float64)
    ours = ward_linkage(x, np.ones(30))
    ref = linkage(x, "ward")
    assert np.allclose(np.sort(ours[:, 2]), np.sort(ref[:, 2]))
    assert np.array_equal(ours[:, 3], ref[:, 3])


def test_granularities_are_nested(make_blobs):
    rng = np.random.default_rng(0)
    centers = make_blobs([1] * 100, dim=12, seed=8, spread=0.0)
    tree, perm = PhenotypeTree.build(centers, rng.integers(1, 500, 100), (5, 10, 20, 50, 100))
    assert sorted(perm.tolist()) == list(range(100))
    assert tree.levels == (5, 10, 20, 50, 100) and tree.is_nested()
    for k in tree.levels:
        groups = tree.groups[k]
        assert sorted(set(groups.tolist())) == list(range(k))  # exactly k classes
        assert np.all(np.diff(groups) >= 0)  # contiguous ranges of leaves, ids in order
    for fine, coarse in ((100, 50), (50, 20), (20, 10), (10, 5), (100, 5)):
        parent = tree.parent_map(fine, coarse)
        leaves = np.arange(100)
        assert np.array_equal(parent[tree.coarsen(leaves, fine)], tree.coarsen(leaves, coarse))
    again = PhenotypeTree.from_dict(tree.to_dict())
    assert all(np.array_equal(again.groups[k], tree.groups[k]) for k in tree.levels)


def test_levels_are_reduced_with_the_phenotypes(make_blobs):
    centers = make_blobs([1] * 37, dim=4, seed=9, spread=0.0)
    tree, _ = PhenotypeTree.build(centers, np.ones(37), (5, 10, 20, 50, 100))
    assert tree.levels == (5, 10, 20, 37)
    with pytest.raises(InputError, match="coarsest level"):
        PhenotypeTree.build(centers[:4], np.ones(4), (5, 10))
    with pytest.raises(InputError, match="not in the merge tree"):
        tree.coarsen(np.arange(37), 50)
