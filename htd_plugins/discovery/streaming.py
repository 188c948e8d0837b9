"""Streaming over (memory-mapped) embedding matrices: chunks, nearest centres, Lloyd passes.

Memory stays bounded whatever the input size: rows are read ``CHUNK_ROWS`` at a time as
float32, and the pages a memmap touched are released after each chunk (``madvise``), so a
float16 file larger than RAM is never resident.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator

import numpy as np

CHUNK_ROWS = 16384
GATHER_ROWS = 1024


def iter_chunks(x: np.ndarray, rows: int = CHUNK_ROWS) -> Iterator[tuple[int, np.ndarray]]:
    """(start, float32 block) over ``x``; a memmap's pages are released after each block."""
    release = getattr(getattr(x, "_mmap", None), "madvise", None)
    for start in range(0, len(x), rows):
        block = np.asarray(x[start : start + rows], dtype=np.float32)
        if release is not None:
            release(mmap.MADV_DONTNEED)
        yield start, block


def gather_rows(x: np.ndarray, index: np.ndarray) -> np.ndarray:
    """float32 rows ``index`` (sorted) of ``x``, releasing memmap pages as it goes.

    Scattered rows fault in whole read-ahead windows (tens of kB each), so pages are released
    every ``GATHER_ROWS`` rows rather than every chunk.
    """
    out = np.empty((len(index), x.shape[1]), np.float32)
    release = getattr(getattr(x, "_mmap", None), "madvise", None)
    for start in range(0, len(index), GATHER_ROWS):
        part = index[start : start + GATHER_ROWS]
        out[start : start + len(part)] = x[part]
        if release is not None:
            release(mmap.MADV_DONTNEED)
    return out


def assign(block: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centre index and squared distance for each row of ``block`` (float32)."""
    import torch

    x, c = torch.from_numpy(block), torch.from_numpy(centers)
    d = (x * x).sum(1, keepdim=True) - 2 * (x @ c.T) + (c * c).sum(1)[None]  # not (2 * x) @
    dist, label = d.min(1)
    return label.numpy(), dist.clamp_min_(0).numpy()


def lloyd_pass(source: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """One streamed Lloyd step: (new centres, counts, inertia of the old centres).

    A centre that gets no point keeps its position.
    """
    import torch

    k, dim = centers.shape
    sums = torch.zeros((k, dim), dtype=torch.float64)
    counts = np.zeros(k, np.int64)
    inertia = 0.0
    for _, block in iter_chunks(source):
        label, dist = assign(block, centers)
        counts += np.bincount(label, minlength=k)
        sums += cluster_sums(torch.from_numpy(block), torch.from_numpy(label), k).double()
        inertia += float(dist.sum(dtype=np.float64))
    new = centers.copy()
    filled = counts > 0
    new[filled] = (sums.numpy()[filled] / counts[filled, None]).astype(np.float32)
    return new, counts, inertia


def cluster_sums(data, labels, k: int):
    """k x D sums of the rows of ``data`` (torch float32) per label."""
    import torch

    return torch.zeros((k, data.shape[1]), dtype=data.dtype).index_add_(0, labels, data)


def assign_all(x: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centre and squared distance of every row of ``x``, streamed."""
    labels = np.empty(len(x), np.int64)
    dists = np.empty(len(x), np.float32)
    for start, block in iter_chunks(x):
        lab, d = assign(block, centers)
        labels[start : start + len(block)], dists[start : start + len(block)] = lab, d
    return labels, dists
