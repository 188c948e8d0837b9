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
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from htd_core.errors import InputError
from htd_plugins.discovery.streaming import (
    assign,
    assign_all,
    cluster_sums,
    gather_rows,
    lloyd_pass,
)

CRITERIA = ("sse", "variance", "size")


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

    def __post_init__(self) -> None:
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


def _kmeans(
    x: np.ndarray, k: int, seed: int, max_iter: int = 100, tol: float = 1e-4
) -> tuple[np.ndarray, np.ndarray]:
    """k-means++ (greedy, 2 + ln k trials) then Lloyd, as scikit-learn's ``KMeans(n_init=1)``.

    Written with torch float32 matrix products: scikit-learn upcasts float32 distances to
    float64 in blocks, which made the many small fits here 2-5x slower.
    """
    import math

    import torch

    data = torch.from_numpy(np.ascontiguousarray(x, np.float32))
    n = len(data)
    k = min(k, n)
    gen = torch.Generator().manual_seed(int(seed))
    sq = (data * data).sum(1)
    first = int(torch.randint(n, (1,), generator=gen))
    chosen = [first]
    closest = (sq - 2 * data @ data[first] + sq[first]).clamp_min_(0)
    trials = 2 + int(math.log(k)) if k > 1 else 1
    for _ in range(1, k):
        total = float(closest.sum())
        if total <= 0:  # fewer distinct points than k
            cand = torch.randint(n, (trials,), generator=gen)
        else:
            cand = torch.multinomial(closest / total, trials, replacement=True, generator=gen)
        dist = (sq[:, None] - 2 * data @ data[cand].T + sq[cand][None]).clamp_min_(0)
        candidates = torch.minimum(closest[:, None], dist)
        best = int(candidates.sum(0).argmin())
        closest = candidates[:, best].contiguous()
        chosen.append(int(cand[best]))
    centers = data[chosen].clone()
    mean = data.mean(0)
    threshold = tol * max(float(sq.mean() - (mean * mean).sum()), 0.0) / data.shape[1]

    def nearest(c: torch.Tensor) -> torch.Tensor:  # |x|^2 is the same for every centre
        return ((c * c).sum(1)[None] - 2 * data @ c.T).argmin(1)

    for _ in range(max_iter):
        labels = nearest(centers)
        counts = torch.bincount(labels, minlength=k)
        sums = cluster_sums(data, labels, k)
        new = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], centers)
        shift = float(((new - centers) ** 2).sum())
        centers = new
        if shift <= threshold:
            break
    labels = nearest(centers)
    return centers.numpy().astype(np.float32), labels.numpy()


def allocate(scores: np.ndarray, caps: np.ndarray, budget: int) -> np.ndarray:
    """Phenotypes per coarse cluster: 1 each, the rest by D'Hondt on ``scores`` within caps."""
    alloc = np.ones(len(scores), np.int64)
    for _ in range(budget - len(scores)):
        quotient = np.where(alloc < caps, scores / alloc, -np.inf)
        best = int(np.argmax(quotient))
        if not np.isfinite(quotient[best]):
            break
        alloc[best] += 1
    return alloc


def split_merge(
    sample: np.ndarray, centers: np.ndarray, o: KMeansOptions, min_size: int
) -> tuple[np.ndarray, int]:
    """Step 4 of the module docstring on the fit sample; returns (centres, swaps done)."""
    centers = centers.copy()
    p = len(centers)
    labels, dist = assign_all(sample, centers)
    swaps = 0
    for _ in range(p if o.max_swaps is None else o.max_swaps):
        counts = np.bincount(labels, minlength=p)
        sse = np.bincount(labels, weights=dist.astype(np.float64), minlength=p)
        score = {"sse": sse, "variance": sse / np.maximum(counts, 1), "size": counts.astype(float)}[
            o.split_criterion
        ]
        eligible = (score >= o.split_threshold * score.mean()) & (counts >= 2 * min_size)
        w = np.maximum(counts, 1).astype(np.float64)
        c64 = centers.astype(np.float64)
        sq = (c64 * c64).sum(1)
        cost = (
            w[:, None]
            * w[None]
            / (w[:, None] + w[None])
            * np.maximum(sq[:, None] - 2 * c64 @ c64.T + sq[None], 0)
        )
        np.fill_diagonal(cost, np.inf)
        a, b = np.unravel_index(int(np.argmin(cost)), cost.shape)
        done = False
        for c in [c for c in np.argsort(-score) if eligible[c] and c not in (a, b)][:3]:
            members = np.nonzero(labels == c)[0]
            sub, sub_labels = _kmeans(sample[members], 2, o.seed + swaps + 1, max_iter=30)
            split_sse = float(((sample[members] - sub[sub_labels]) ** 2).sum(dtype=np.float64))
            if sse[c] - split_sse > 1.05 * cost[a, b]:
                centers[a] = ((w[a] * c64[a] + w[b] * c64[b]) / (w[a] + w[b])).astype(np.float32)
                centers[b], centers[c] = sub[0], sub[1]
                moved = np.nonzero(np.isin(labels, [a, b, c]))[0]
                lab, d = assign(sample[moved], centers[[a, b, c]])
                labels[moved], dist[moved] = np.asarray([a, b, c])[lab], d
                swaps, done = swaps + 1, True
                break
        if not done:
            break
    return centers, swaps


class HierarchicalKMeans:
    """Phenotype centroids of a (possibly memory-mapped) N x D embedding matrix.

    After :meth:`fit`: ``centers_`` (P x D float32), ``counts_`` (points per phenotype in the
    last pass), ``inertia_`` (sum of squared distances in the last pass, before its update),
    ``coarse_`` (coarse cluster each phenotype started in), ``swaps_`` (split-merge moves)
    and ``n_phenotypes_`` (P, possibly reduced: see :meth:`effective_phenotypes`).
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
        o = self.options
        n = len(x)
        p = self.effective_phenotypes(n)
        rng = np.random.default_rng(o.seed)
        fit_rows = min(n, o.fit_sample or 256 * p)
        sample = gather_rows(x, np.sort(rng.choice(n, size=fit_rows, replace=False)))
        min_size = max(1, int(round(o.min_cluster_size * len(sample) / n)))
        k0 = min(o.coarse_k, p)
        coarse_rows = rng.choice(len(sample), size=min(len(sample), 256 * k0), replace=False)
        coarse_centers, _ = _kmeans(sample[np.sort(coarse_rows)], k0, o.seed, o.init_iters)
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
                else _kmeans(members, a, o.seed + c + 1, o.init_iters)[0]
            )
            parents += [c] * len(centers[-1])
        self.centers_ = np.concatenate(centers).astype(np.float32)
        self.coarse_ = np.asarray(parents, np.int64)
        for _ in range(o.refine_iters):
            self.centers_, _, _ = lloyd_pass(sample, self.centers_)
        self.centers_, self.swaps_ = split_merge(sample, self.centers_, o, min_size)
        for _ in range(o.refine_iters if self.swaps_ else 0):
            self.centers_, _, _ = lloyd_pass(sample, self.centers_)
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
