"""Overlapping windows over a canvas and the smooth weights that blend them.

A canvas axis of length L is covered by n windows of side w whose starts are spread evenly
from 0 to L - w, at most ``w (1 - overlap)`` apart (n = ceil((L - w) / stride) + 1). A window's
weight along an axis is 1 in its middle and ramps as ``sin^2`` over the part it shares with
its neighbour on each side, so two windows overlapping by ``o`` px sum to exactly 1 there
(``sin^2 + cos^2``); canvas borders are not ramped. The 2-D weight is the outer product of the
two axes' weights. Every weight is > 0, and blended predictions are divided by the sum of the
weights, so any overlap (even windows meeting three deep) blends to a weighted mean.

This is MultiDiffusion's blending (Bar-Tal et al., ICML 2023, eq. 5: the per-pixel weighted
mean of the windows' predictions) with the smooth weights of Mixture of Diffusers (Jimenez,
2023) instead of uniform ones.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from htd_core.errors import InputError


def axis_starts(length: int, window: int, overlap: float) -> np.ndarray:
    """Start of every window along an axis of ``length`` (int64, first 0, last length - window).

    Args:
        length: canvas side in cells (latent or image px).
        window: window side in the same unit; ``window <= length``.
        overlap: fraction of ``window`` that consecutive windows share at least, in [0, 1).
            0 is a plain tiling (windows meet edge to edge when ``length`` is a multiple of
            ``window``; otherwise the last ones overlap a little).
    """
    if window > length:
        raise InputError(f"window {window} is larger than the canvas side {length}")
    if not 0 <= overlap < 1:
        raise InputError(f"overlap={overlap!r} must be in [0, 1) (0: no overlap, 0.5: half)")
    stride = max(1, int(math.floor(window * (1.0 - overlap) + 1e-9)))
    n = math.ceil((length - window) / stride) + 1
    return np.rint(np.linspace(0, length - window, n)).astype(np.int64)


def axis_weights(starts: np.ndarray, window: int) -> np.ndarray:
    """float64 n x window: the blending weight of each window along one axis (module doc)."""
    n = len(starts)
    out = np.ones((n, window))
    for i in range(n):
        if i > 0:
            shared = int(starts[i - 1] + window - starts[i])
            if shared > 0:
                out[i, :shared] = np.minimum(out[i, :shared], ramp(shared))
        if i < n - 1:
            shared = int(starts[i] + window - starts[i + 1])
            if shared > 0:
                out[i, window - shared :] = np.minimum(
                    out[i, window - shared :], ramp(shared)[::-1]
                )
    return out


def ramp(length: int) -> np.ndarray:
    """Rising ``sin^2`` ramp of ``length`` samples, strictly inside (0, 1): ``ramp(o)`` plus
    the reversed ramp of the neighbour is 1 at every sample."""
    j = (np.arange(length) + 0.5) / length
    return np.sin(0.5 * np.pi * j) ** 2


@dataclass(frozen=True)
class WindowPlan:
    """Windows of ``window`` x ``window`` cells over a ``height`` x ``width`` canvas.

    Attributes:
        ys, xs: window starts along each axis (see :func:`axis_starts`).
        wy, wx: per-axis weights (see :func:`axis_weights`).
    """

    height: int
    width: int
    window: int
    overlap: float
    ys: np.ndarray
    xs: np.ndarray
    wy: np.ndarray
    wx: np.ndarray

    @classmethod
    def create(cls, height: int, width: int, window: int, overlap: float) -> WindowPlan:
        ys, xs = axis_starts(height, window, overlap), axis_starts(width, window, overlap)
        return cls(
            height,
            width,
            window,
            overlap,
            ys,
            xs,
            axis_weights(ys, window),
            axis_weights(xs, window),
        )

    def __len__(self) -> int:
        return len(self.ys) * len(self.xs)

    @property
    def grid(self) -> tuple[int, int]:
        """(rows, columns) of windows."""
        return len(self.ys), len(self.xs)

    def position(self, index: int) -> tuple[int, int]:
        """(y, x) start of window ``index`` (row-major)."""
        r, c = divmod(index, len(self.xs))
        return int(self.ys[r]), int(self.xs[c])

    def weight(self, index: int) -> np.ndarray:
        """float32 window x window blending weight of window ``index``."""
        r, c = divmod(index, len(self.xs))
        return np.outer(self.wy[r], self.wx[c]).astype(np.float32)

    def weight_sum(self) -> np.ndarray:
        """float32 height x width sum of all windows' weights (> 0 everywhere)."""
        sy = np.zeros(self.height)
        sx = np.zeros(self.width)
        for y, w in zip(self.ys, self.wy, strict=True):
            sy[y : y + self.window] += w
        for x, w in zip(self.xs, self.wx, strict=True):
            sx[x : x + self.window] += w
        return np.outer(sy.astype(np.float32), sx.astype(np.float32))

    def batches(self, size: int, start: int = 0) -> Iterator[list[int]]:
        """Window indices in row-major order, ``size`` at a time."""
        for b in range(start, len(self), size):
            yield list(range(b, min(b + size, len(self))))

    def edges(self, scale: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Interior window edges (y rows, x columns), times ``scale`` (latent -> image px):
        every start > 0 and every end < the canvas side, sorted and unique."""

        def axis(starts: np.ndarray, length: int) -> np.ndarray:
            lines = np.concatenate([starts, starts + self.window])
            return np.unique(lines[(lines > 0) & (lines < length)]) * scale

        return axis(self.ys, self.height), axis(self.xs, self.width)
