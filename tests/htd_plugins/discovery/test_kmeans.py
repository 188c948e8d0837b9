"""Hierarchical k-means: inertia close to scikit-learn, memmaps, automatic reduction."""

from __future__ import annotations

import numpy as np
import pytest

from htd_core.errors import InputError
from htd_plugins.discovery.kmeans import HierarchicalKMeans, KMeansOptions, allocate


def test_inertia_close_to_sklearn_kmeans(make_blobs):
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(0)
    x = make_blobs(list(rng.integers(20, 100, 30)), dim=16, seed=4, spread=1.0)
    ours = HierarchicalKMeans(KMeansOptions(n_phenotypes=20, coarse_k=5, fit_sample=1000)).fit(x)
    ref = KMeans(20, random_state=0).fit(x)
    assert ours.centers_.shape == (20, 16)
    assert ours.inertia(x) <= 1.10 * ref.inertia_
    assert ours.counts_.sum() == len(x)
    assert set(ours.coarse_) == set(range(5))


def test_memmap_float16_input(tmp_path, make_blobs):
    x = make_blobs([400, 300, 200, 100], dim=16, seed=5)
    path = tmp_path / "x.f16"
    x.astype(np.float16).tofile(path)
    mm = np.memmap(path, np.float16, "r", shape=x.shape)
    model = HierarchicalKMeans(KMeansOptions(n_phenotypes=8, coarse_k=4)).fit(mm)
    labels = model.predict(mm)
    assert labels.shape == (1000,) and labels.max() < 8
    # each true blob is split among phenotypes that it owns (no phenotype spans two blobs)
    truth = np.repeat(np.arange(4), [400, 300, 200, 100])
    for k in range(8):
        assert len(np.unique(truth[labels == k])) <= 1


def test_fewer_patches_than_phenotypes(make_blobs):
    x = make_blobs([15, 15], dim=4)
    with pytest.warns(UserWarning, match="using 6 phenotypes"):
        model = HierarchicalKMeans(KMeansOptions(n_phenotypes=100)).fit(x)
    assert model.n_phenotypes_ == 6
    with pytest.raises(InputError, match="at least 10 are needed"):
        HierarchicalKMeans(KMeansOptions(n_phenotypes=100)).fit(x[:8])


def test_allocation_and_split_options(make_blobs):
    scores = np.array([10.0, 1.0, 1.0])
    assert allocate(scores, np.array([100, 100, 100]), 10).tolist() == [8, 1, 1]
    assert allocate(scores, np.array([3, 100, 100]), 10).tolist() == [3, 4, 3]
    with pytest.raises(InputError, match="split_criterion"):
        KMeansOptions(split_criterion="gini")
    # one coarse cluster per true blob pair: the top-down split alone misplaces centroids,
    # the split-merge step moves them; with the threshold above every score nothing moves
    x = make_blobs([200, 20, 200, 20, 200, 20], dim=16, seed=6, spread=0.5)
    base = dict(n_phenotypes=6, coarse_k=2, refine_iters=2)
    frozen = HierarchicalKMeans(KMeansOptions(**base, split_threshold=1e9)).fit(x)
    moved = HierarchicalKMeans(KMeansOptions(**base, split_criterion="variance")).fit(x)
    assert frozen.swaps_ == 0 and moved.swaps_ > 0
    assert moved.inertia(x) < 0.5 * frozen.inertia(x)


def test_identical_embeddings_warn_of_the_empty_phenotypes():
    """Issue 27: identical embeddings gave 12 phenotypes, 11 empty, without a word."""
    x = np.ones((120, 8), np.float32)
    with pytest.warns(UserWarning, match=r"(\d+) of 12 phenotypes hold no embedding: the 120 "
                      r"embeddings have 1 distinct value\(s\)"):  # fmt: skip
        model = HierarchicalKMeans(KMeansOptions(n_phenotypes=12, min_cluster_size=5)).fit(x)
    assert (model.counts_ == 0).sum() >= 1


def test_distinct_embeddings_do_not_warn(make_blobs):
    import warnings

    x = make_blobs([40, 40, 40], dim=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        HierarchicalKMeans(KMeansOptions(n_phenotypes=3, coarse_k=2, min_cluster_size=5)).fit(x)
