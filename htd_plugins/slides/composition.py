"""Vectorised composition of candidate windows on a class map, and the rules that use it.

Per-class counts of every window come from block counts (one ``bincount`` pass over the map)
and a summed-area table over blocks, so deciding N candidates costs O(map + N * K) instead of
reading N full-resolution patches. Fractions are of *labelled* cells (not the ignore index),
as :meth:`htd_core.TissueSample.composition` computes them from an exported mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from htd_core.errors import InputError

_MAX_BYTES = 256 * 2**20  # summed-area tables are built in class chunks under this size


def window_counts(
    cells: np.ndarray, num_classes: int, positions: np.ndarray, window: int, block: int = 1
) -> np.ndarray:
    """Per-class cell counts of square windows.

    Args:
        cells: 2-D class map; values >= ``num_classes`` are not counted (ignore).
        positions: N x 2 (row, col) top-left cells, multiples of ``block``.
        window: window side in cells, a multiple of ``block``.
        block: common divisor of positions and window (bigger = faster, less memory).

    Returns:
        N x K int64 counts.
    """
    positions = np.asarray(positions, np.int64).reshape(-1, 2)
    if window % block or (positions % block).any():
        raise ValueError(f"window {window} and positions must be multiples of block {block}")
    rows, cols = cells.shape
    hb, wb = math.ceil(rows / block), math.ceil(cols / block)
    pr, pc, wk = positions[:, 0] // block, positions[:, 1] // block, window // block
    out = np.zeros((len(positions), num_classes), np.int64)
    col_block = np.arange(cols, dtype=np.int64) // block
    chunk = max(1, _MAX_BYTES // ((hb + 1) * (wb + 1) * 8))
    strip = max(1, (4 << 20) // max(1, wb * block * block))  # block rows per bincount pass
    for c0 in range(0, num_classes, chunk):
        kc = min(c0 + chunk, num_classes) - c0
        counts = np.zeros((hb, wb, kc), np.int64)
        for s0 in range(0, hb, strip):
            s1 = min(s0 + strip, hb)
            codes = cells[s0 * block : s1 * block].astype(np.int64) - c0
            valid = (codes >= 0) & (codes < kc)
            row_block = (np.arange(codes.shape[0], dtype=np.int64) // block)[:, None]
            flat = ((row_block * wb + col_block[None, :]) * kc + codes)[valid]
            counts[s0:s1] = np.bincount(flat, minlength=(s1 - s0) * wb * kc).reshape(
                s1 - s0, wb, kc
            )
        sat = np.zeros((hb + 1, wb + 1, kc), np.int64)
        sat[1:, 1:] = counts.cumsum(0).cumsum(1)
        out[:, c0 : c0 + kc] = (
            sat[pr + wk, pc + wk] - sat[pr, pc + wk] - sat[pr + wk, pc] + sat[pr, pc]
        )
    return out


def fractions(counts: np.ndarray, window_cells: int) -> tuple[np.ndarray, np.ndarray]:
    """(class fractions of labelled cells N x K, labelled fraction of the window N)."""
    counts = np.asarray(counts, np.int64)
    labelled = counts.sum(axis=1)
    frac = counts / np.maximum(labelled, 1)[:, None]
    return frac, labelled / float(window_cells)


def entropy(frac: np.ndarray) -> np.ndarray:
    """Tissue-diversity entropy H = -sum p log p (natural log) per row."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(frac > 0, -frac * np.log(np.where(frac > 0, frac, 1.0)), 0.0)
    return terms.sum(axis=1)


@dataclass(frozen=True)
class CompositionRule:
    """Which compositions a patch may have.

    ``heterogeneous``: at least ``min_classes`` classes each within [min_frac, max_frac];
    ``homogeneous``: one class >= ``homogeneous_frac`` (baselines). Both need a labelled
    fraction >= ``min_labeled``. Classes in ``exclude`` (e.g. background) never qualify.
    """

    mode: str = "heterogeneous"
    min_frac: float = 0.2
    max_frac: float = 0.8
    min_classes: int = 2
    homogeneous_frac: float = 0.9
    min_labeled: float = 0.5
    exclude: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in ("heterogeneous", "homogeneous"):
            raise InputError(f"mode={self.mode!r}: use 'heterogeneous' or 'homogeneous'")
        for name in ("min_frac", "max_frac", "homogeneous_frac", "min_labeled"):
            v = getattr(self, name)
            if not isinstance(v, int | float) or not 0.0 <= v <= 1.0:
                raise InputError(f"{name}={v!r}: give a fraction in [0, 1]")
        if self.min_frac > self.max_frac:
            raise InputError(
                f"min_frac={self.min_frac} > max_frac={self.max_frac}: min_frac must be <= max_frac"
            )
        if not isinstance(self.min_classes, int) or self.min_classes < 1:
            raise InputError(f"min_classes={self.min_classes!r}: give an integer >= 1")
        if self.mode == "heterogeneous" and self.min_classes * self.min_frac > 1.0:
            raise InputError(
                f"min_classes={self.min_classes} x min_frac={self.min_frac} > 1: no patch can satisfy it"
            )

    def qualifying(self, frac: np.ndarray) -> np.ndarray:
        """N x K: classes within [min_frac, max_frac] (excluded classes never)."""
        q = (frac >= self.min_frac) & (frac <= self.max_frac)
        if self.exclude:
            q[:, list(self.exclude)] = False
        return q

    def accept(self, frac: np.ndarray, labelled: np.ndarray) -> np.ndarray:
        """Boolean N: windows whose composition satisfies the rule."""
        ok = (labelled >= self.min_labeled) & (labelled > 0)
        if self.mode == "heterogeneous":
            return ok & (self.qualifying(frac).sum(axis=1) >= self.min_classes)
        top = frac.copy()
        if self.exclude:
            top[:, list(self.exclude)] = 0.0
        return ok & (top.max(axis=1) >= self.homogeneous_frac)

    def group(self, frac: np.ndarray) -> np.ndarray:
        """Balancing key per window: its class pair (two largest qualifying classes) or
        its dominant class (homogeneous)."""
        k = frac.shape[1]
        if self.mode == "homogeneous":
            return frac.argmax(axis=1)
        masked = np.where(self.qualifying(frac), frac, -1.0)
        order = np.argsort(-masked, axis=1, kind="stable")[:, :2]
        a, b = np.minimum(order[:, 0], order[:, 1]), np.maximum(order[:, 0], order[:, 1])
        return a * k + b


def interleave_groups(order: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Reorder ``order`` round-robin over groups (each group keeps its internal order), so
    any prefix is balanced across groups."""
    g = groups[order]
    _, first = np.unique(g, return_index=True)
    group_rank = np.argsort(np.argsort(first))  # groups ranked by first appearance
    _, inverse = np.unique(g, return_inverse=True)
    within = np.zeros(len(order), np.int64)
    seen: dict[int, int] = {}
    for i, gi in enumerate(inverse):
        within[i] = seen.get(gi, 0)
        seen[gi] = within[i] + 1
    return order[np.lexsort((group_rank[inverse], within))]


def limit_overlap(
    xy: np.ndarray, order: np.ndarray, size: int, max_overlap: float, limit: int | None = None
) -> np.ndarray:
    """Greedy selection in ``order``: keep a window when its overlap (intersection / area)
    with every kept window is <= ``max_overlap``; stop at ``limit``."""
    if max_overlap >= 1.0:
        return order[:limit] if limit is not None else order
    kept: list[int] = []
    buckets: dict[tuple[int, int], list[int]] = {}
    area = float(size * size)
    for i in order:
        x, y = int(xy[i, 0]), int(xy[i, 1])
        bx, by = x // size, y // size
        clash = False
        for nb in ((bx + dx, by + dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1)):
            for j in buckets.get(nb, ()):
                ix = max(0, size - abs(x - int(xy[j, 0])))
                iy = max(0, size - abs(y - int(xy[j, 1])))
                if ix * iy / area > max_overlap:
                    clash = True
                    break
            if clash:
                break
        if not clash:
            kept.append(int(i))
            buckets.setdefault((bx, by), []).append(int(i))
            if limit is not None and len(kept) >= limit:
                break
    return np.asarray(kept, np.int64)
