"""Hierarchical k-means to phenotypes, with memory bounded by streaming the input.

1. *Coarse*: k-means (k-means++ init, ``init_iters`` Lloyd iterations; scikit-learn's
   algorithm, in torch float32) with ``coarse_k`` clusters, fitted on 256 rows per coarse
   cluster of a uniform fit sample of ``fit_sample`` rows (default 256 per phenotype: faiss'
   rule for training k-means), then the whole fit sample is assigned.
2. *Fine*: the phenotype budget is shared among the coarse clusters by D'Hondt allocation on
   their within-cluster sum of squares (SSE: what extra centroids reduce), and each coarse
   cluster is split by k-means into its share ``a``.
3. *Refine*: ``refine_iters`` Lloyd iterations of all phenotypes on the fit sample.
4. *Sub-cluster high-variance clusters*: phenotypes whose ``split_criterion`` score (``sse``,
   ``variance`` = SSE per point, or ``size``) is at least ``split_threshold`` x the mean score
   are candidates, highest first; a candidate is split in two (2-means) when that lowers the
   SSE more than merging the cheapest pair of phenotypes (Ward cost) raises it, so the count
   stays P. Repeated up to ``max_swaps`` times, then ``refine_iters`` Lloyd iterations again.
   This repairs the top-down split's mistakes (two centroids in one mode, one across two).
5. *Full passes*: ``full_passes`` streamed Lloyd passes over the whole input.

With ``backend="faiss"`` one flat faiss k-means from a k-means++ start replaces steps 1-4.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from htd_core.errors import InputError
from htd_plugins.discovery.kmeans_steps import (
    allocate,
    kmeans_plus_plus,
    lloyd_kmeans,
    split_merge,
)
from htd_plugins.discovery.streaming import assign_all, gather_rows, lloyd_pass

CRITERIA = ("sse", "variance", "size")
#: How the centres are found on the fit sample: ``htd`` (steps 1-4 above) or ``faiss`` (one
#: flat faiss k-means: :mod:`htd_plugins.discovery.faiss_kmeans`); step 5 is the same.
BACKENDS = ("htd", "faiss")


@dataclass(frozen=True)
class KMeansOptions:
    """Options of :class:`HierarchicalKMeans` (see the module docstring)."""

    n_phenotypes: int = 100
    coarse_k: int = 10
    split_criterion: str = "sse"
    split_threshold: float = 1.0
    max_swaps: int | None = None  # default: n_phenotypes
    fit_sample: int | None = None  # default: 256 rows per phenotype (faiss' training rule)
    init_iters: int = 10
    refine_iters: int = 3
    full_passes: int = 1
    min_cluster_size: int = 5
    seed: int = 0
    backend: str = "htd"

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise InputError(f"backend={self.backend!r}: use one of {list(BACKENDS)}")
        if self.split_criterion not in CRITERIA:
            raise InputError(
                f"split_criterion={self.split_criterion!r}: use one of {list(CRITERIA)}"
            )
        for name in ("n_phenotypes", "coarse_k", "fit_sample", "min_cluster_size", "init_iters"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise InputError(f"{name}={getattr(self, name)} must be at least 1")
        if self.n_phenotypes < 2:
            raise InputError(f"n_phenotypes={self.n_phenotypes} must be at least 2")
        if self.split_threshold < 0 or self.refine_iters < 0 or self.full_passes < 0:
            raise InputError("split_threshold, refine_iters and full_passes must be >= 0")
        if self.max_swaps is not None and self.max_swaps < 0:
            raise InputError(f"max_swaps={self.max_swaps} must be >= 0")


class HierarchicalKMeans:
    """Phenotype centroids of a (possibly memory-mapped) N x D embedding matrix.

    After :meth:`fit`: ``centers_`` (P x D float32), ``counts_`` (points per phenotype in the
    last pass), ``inertia_`` (sum of squared distances in the last pass, before its update),
    ``coarse_`` (coarse cluster each phenotype started in; all 0 with the faiss backend),
    ``swaps_`` (split-merge moves; 0 with faiss) and ``n_phenotypes_`` (P, possibly reduced:
    see :meth:`effective_phenotypes`). ``options.backend`` picks how steps 1-4 are done.
    """

    def __init__(self, options: KMeansOptions | None = None) -> None:
        self.options = options or KMeansOptions()

    def effective_phenotypes(self, n: int) -> int:
        """``n_phenotypes``, reduced so that each holds ``min_cluster_size`` points on average.

        Raises:
            InputError: fewer than 2 phenotypes would remain.
        """
        o = self.options
        p = min(o.n_phenotypes, n // o.min_cluster_size)
        if p < 2:
            raise InputError(
                f"only {n} embeddings to cluster: at least {2 * o.min_cluster_size} are needed "
                f"for 2 phenotypes (min_cluster_size={o.min_cluster_size}); add slides, lower "
                "--min-tissue or the stride, or lower --min-cluster-size"
            )
        if p < o.n_phenotypes:
            warnings.warn(
                f"{n} embeddings are too few for {o.n_phenotypes} phenotypes of at least "
                f"{o.min_cluster_size} points: using {p} phenotypes",
                stacklevel=2,
            )
        return p

    def fit(self, x: np.ndarray) -> HierarchicalKMeans:
        """Fit on ``x`` (N x D, float16 or float32, memory-mapped or not); returns ``self``.

        Raises:
            InputError: too few rows for 2 phenotypes.
        """
        o = self.options
        n = len(x)
        p = self.effective_phenotypes(n)
        rng = np.random.default_rng(o.seed)
        fit_rows = min(n, o.fit_sample or 256 * p)
        sample = gather_rows(x, np.sort(rng.choice(n, size=fit_rows, replace=False)))
        min_size = max(1, int(round(o.min_cluster_size * len(sample) / n)))
        if o.backend == "faiss":
            from htd_plugins.discovery.faiss_kmeans import faiss_centers

            start = sample[kmeans_plus_plus(sample, p, o.seed)]
            self.centers_ = faiss_centers(sample, start)
            self.coarse_, self.swaps_ = np.zeros(p, np.int64), 0  # one flat k-means
        else:
            self.centers_ = self._sample_centers(sample, p, min_size, rng)
        for _ in range(o.full_passes):
            self.centers_, self.counts_, self.inertia_ = lloyd_pass(x, self.centers_)
        if o.full_passes == 0:  # statistics from the fit sample, scaled to the input
            labels, dist = assign_all(sample, self.centers_)
            scale = n / len(sample)
            self.counts_ = np.round(np.bincount(labels, minlength=p) * scale).astype(np.int64)
            self.inertia_ = float(dist.sum(dtype=np.float64) * scale)
        self.n_phenotypes_ = len(self.centers_)
        self._warn_empty(sample, n)
        return self

    def _sample_centers(
        self, sample: np.ndarray, p: int, min_size: int, rng: np.random.Generator
    ) -> np.ndarray:
        """Steps 1-4 of the module docstring: P x D float32 centres from the fit sample;
        sets ``coarse_`` and ``swaps_``."""
        o = self.options
        k0 = min(o.coarse_k, p)
        coarse_rows = rng.choice(len(sample), size=min(len(sample), 256 * k0), replace=False)
        coarse_centers, _ = lloyd_kmeans(sample[np.sort(coarse_rows)], k0, o.seed, o.init_iters)
        coarse_labels, coarse_dist = assign_all(sample, coarse_centers)
        sizes = np.bincount(coarse_labels, minlength=k0)
        sse = np.bincount(coarse_labels, weights=coarse_dist.astype(np.float64), minlength=k0)
        alloc = allocate(sse, np.maximum(sizes // min_size, 1), p)
        centers, parents = [], []
        for c in range(k0):
            members = sample[coarse_labels == c]
            a = int(min(alloc[c], len(members)))
            centers.append(
                coarse_centers[c : c + 1]
                if a <= 1
                else lloyd_kmeans(members, a, o.seed + c + 1, o.init_iters)[0]
            )
            parents += [c] * len(centers[-1])
        found = np.concatenate(centers).astype(np.float32)
        self.coarse_ = np.asarray(parents, np.int64)
        for _ in range(o.refine_iters):
            found, _, _ = lloyd_pass(sample, found)
        found, self.swaps_ = split_merge(
            sample, found, criterion=o.split_criterion, threshold=o.split_threshold,
            max_swaps=o.max_swaps, seed=o.seed, min_size=min_size,
        )  # fmt: skip
        for _ in range(o.refine_iters if self.swaps_ else 0):
            found, _, _ = lloyd_pass(sample, found)
        return found

    def _warn_empty(self, sample: np.ndarray, n: int) -> None:
        """Name phenotypes that hold no embedding (identical or near-identical embeddings:
        a blank region, a broken encoder) instead of writing empty ones silently."""
        empty = int((self.counts_ == 0).sum())
        if empty:
            distinct = len(np.unique(np.asarray(sample, np.float32), axis=0))
            warnings.warn(
                f"{empty} of {self.n_phenotypes_} phenotypes hold no embedding: the {n} "
                f"embeddings have {distinct} distinct value(s) in the fit sample (identical "
                "patches, a blank or uniform region, or a broken encoder?); check the "
                f"embeddings, or ask for fewer phenotypes (--phenotypes {max(2, distinct)})",
                stacklevel=3,
            )

    def predict_with_distance(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest phenotype and squared distance per row, streamed over ``x``."""
        return assign_all(x, self.centers_)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return assign_all(x, self.centers_)[0]

    def inertia(self, x: np.ndarray) -> float:
        """Sum of squared distances of ``x`` to the nearest phenotype (streamed)."""
        return float(assign_all(x, self.centers_)[1].sum(dtype=np.float64))
