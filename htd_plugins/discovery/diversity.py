"""Diversity-aware sampling: M patches per slide that cover its embedding space.

The choice is *k-center greedy seeded by a random subset* (the coreset construction of Sener &
Savarese, 2018): a fraction ``1 - diversity`` of the M patches is drawn uniformly (so common
tissue keeps its weight in k-means), then the remaining ``diversity * M`` are added one at a
time, each the patch farthest from everything chosen so far (farthest-point sampling), so rare
tissue that the random draw missed is covered too. Pure farthest-point sampling (diversity=1)
over-weights outliers (folds, pen marks, blur); pure random (diversity=0) misses rare tissue.

Distances are computed on a fixed Gaussian random projection to ``sketch_dim`` dimensions
(Johnson-Lindenstrauss: pairwise distances kept within a few percent), which makes the greedy
loop O(N * M * sketch_dim) instead of O(N * M * D).
"""

from __future__ import annotations

import numpy as np

from htd_core.errors import InputError

READ_CHUNK = 16384


def random_projection(dim: int, sketch_dim: int, seed: int = 0) -> np.ndarray | None:
    """D x sketch_dim Gaussian projection (scaled to keep norms), or None when D is small."""
    if dim <= sketch_dim:
        return None
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((dim, sketch_dim)) / np.sqrt(sketch_dim)).astype(np.float32)


def sketch(embeddings: np.ndarray, projection: np.ndarray | None) -> np.ndarray:
    """float32 N x sketch_dim, read in chunks (the input may be a float16 memmap)."""
    n = len(embeddings)
    width = embeddings.shape[1] if projection is None else projection.shape[1]
    out = np.empty((n, width), np.float32)
    for start in range(0, n, READ_CHUNK):
        block = np.asarray(embeddings[start : start + READ_CHUNK], np.float32)
        out[start : start + len(block)] = block if projection is None else block @ projection
    return out


def k_center_greedy(
    points: np.ndarray, m: int, *, diversity: float = 0.5, seed: int = 0
) -> np.ndarray:
    """Indices (sorted) of ``m`` rows of ``points`` (N x d float32) chosen as described above."""
    import torch

    if not 0.0 <= diversity <= 1.0:
        raise InputError(f"diversity={diversity} must be in [0, 1]")
    n = len(points)
    if m >= n:
        return np.arange(n)
    if m <= 0:
        return np.zeros(0, np.int64)
    rng = np.random.default_rng(seed)
    n_random = max(1, int(round(m * (1.0 - diversity))))
    chosen = list(rng.choice(n, size=n_random, replace=False))
    x = torch.from_numpy(np.ascontiguousarray(points, np.float32))
    sq = (x * x).sum(1)
    nearest = torch.full((n,), float("inf"))
    for start in range(0, len(chosen), 1024):  # distance to the random seed set, in blocks
        c = x[chosen[start : start + 1024]]
        d = sq[:, None] - 2 * (x @ c.T) + (c * c).sum(1)[None]
        nearest = torch.minimum(nearest, d.min(1).values)
    nearest[chosen] = -1.0
    for _ in range(m - n_random):
        i = int(torch.argmax(nearest))
        chosen.append(i)
        d = sq - 2 * (x @ x[i]) + sq[i]  # 2 * x @ y would copy x first
        nearest = torch.minimum(nearest, d)
        nearest[i] = -1.0
    return np.sort(np.asarray(chosen, np.int64))


def sample_slide(
    embeddings: np.ndarray,
    m: int = 1000,
    *,
    diversity: float = 0.5,
    sketch_dim: int = 128,
    seed: int = 0,
) -> np.ndarray:
    """Indices of ``m`` diverse patches of one slide's embeddings (all when N <= m)."""
    if m < 1:
        raise InputError(f"samples per slide={m} must be at least 1")
    if len(embeddings) <= m:
        return np.arange(len(embeddings))
    projection = random_projection(embeddings.shape[1], sketch_dim, seed)
    return k_center_greedy(sketch(embeddings, projection), m, diversity=diversity, seed=seed)
