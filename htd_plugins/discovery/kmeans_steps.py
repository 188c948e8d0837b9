"""The steps of :mod:`htd_plugins.discovery.kmeans`: k-means++ seeding, small in-memory
k-means (scikit-learn's algorithm in torch float32), D'Hondt allocation and split-merge.
"""

from __future__ import annotations

import numpy as np

from htd_plugins.discovery.streaming import assign, assign_all, cluster_sums


def kmeans_plus_plus(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Row indices of ``k`` starting centres of ``x`` (N x D) by greedy k-means++ (2 + ln k
    trials per centre, the best kept), as scikit-learn's ``KMeans``; ``min(k, N)`` of them."""
    import torch

    data = torch.from_numpy(np.ascontiguousarray(x, np.float32))
    return np.asarray(_plus_plus(data, min(k, len(data)), seed), np.int64)


def _plus_plus(data, k: int, seed: int) -> list[int]:
    import math

    import torch

    n = len(data)
    gen = torch.Generator().manual_seed(int(seed))
    sq = (data * data).sum(1)
    first = int(torch.randint(n, (1,), generator=gen))
    chosen = [first]
    closest = (sq - 2 * (data @ data[first]) + sq[first]).clamp_min_(0)
    trials = 2 + int(math.log(k)) if k > 1 else 1
    for _ in range(1, k):
        total = float(closest.sum())
        if total <= 0:  # fewer distinct points than k
            cand = torch.randint(n, (trials,), generator=gen)
        else:
            cand = torch.multinomial(closest / total, trials, replacement=True, generator=gen)
        dist = (sq[:, None] - 2 * (data @ data[cand].T) + sq[cand][None]).clamp_min_(0)
        candidates = torch.minimum(closest[:, None], dist)
        best = int(candidates.sum(0).argmin())
        closest = candidates[:, best].contiguous()
        chosen.append(int(cand[best]))
    return chosen


def lloyd_kmeans(
    x: np.ndarray, k: int, seed: int, max_iter: int = 100, tol: float = 1e-4
) -> tuple[np.ndarray, np.ndarray]:
    """k-means++ then Lloyd, as scikit-learn's ``KMeans(n_init=1)``: (k x D float32 centres,
    N labels).

    Written with torch float32 matrix products: scikit-learn upcasts float32 distances to
    float64 in blocks, which made the many small fits here 2-5x slower.
    """
    import torch

    data = torch.from_numpy(np.ascontiguousarray(x, np.float32))
    k = min(k, len(data))
    sq = (data * data).sum(1)
    chosen = _plus_plus(data, k, seed)
    centers = data[chosen].clone()
    mean = data.mean(0)
    threshold = tol * max(float(sq.mean() - (mean * mean).sum()), 0.0) / data.shape[1]

    def nearest(c: torch.Tensor) -> torch.Tensor:  # |x|^2 is the same for every centre
        return ((c * c).sum(1)[None] - 2 * (data @ c.T)).argmin(1)

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
    sample: np.ndarray,
    centers: np.ndarray,
    *,
    criterion: str,
    threshold: float,
    max_swaps: int | None,
    seed: int,
    min_size: int,
) -> tuple[np.ndarray, int]:
    """Step 4 of :mod:`htd_plugins.discovery.kmeans` on the fit sample (its options
    ``split_criterion``, ``split_threshold``, ``max_swaps``, ``seed``); returns (centres, swaps
    done)."""
    centers = centers.copy()
    p = len(centers)
    labels, dist = assign_all(sample, centers)
    swaps = 0
    for _ in range(p if max_swaps is None else max_swaps):
        counts = np.bincount(labels, minlength=p)
        sse = np.bincount(labels, weights=dist.astype(np.float64), minlength=p)
        score = {"sse": sse, "variance": sse / np.maximum(counts, 1), "size": counts.astype(float)}[
            criterion
        ]
        eligible = (score >= threshold * score.mean()) & (counts >= 2 * min_size)
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
            sub, sub_labels = lloyd_kmeans(sample[members], 2, seed + swaps + 1, max_iter=30)
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
